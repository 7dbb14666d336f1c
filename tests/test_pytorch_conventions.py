"""PyTorch's habits: parameters() / named_parameters(), state_dict() /
load_state_dict(), summary(input_shape), DLPack in and out."""

import io

import numpy as np
import pytest
import torch

import deepconv
from deepconv.models import alexnet, vgg
from deepconv.nn import Conv2d, Flatten, Linear, ReLU, Sequential, count_parameters


def _model(seed=0, dtype="float32"):
    model = Sequential(("conv", Conv2d(2, 3, 3, padding=1, dtype=dtype)), ReLU(), Flatten(),
                       ("fc", Linear(3 * 4 * 4, 5, dtype=dtype)))
    return model.reset_parameters(seed)


def test_parameters_are_arrays_and_named_parameters_pairs():
    model = _model()
    named = model.named_parameters()
    assert [n for n, _ in named] == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    assert all(a is b for a, (_, b) in zip(model.parameters(), named))
    assert all(isinstance(a, np.ndarray) for a in model.parameters())
    grads = model.named_gradients()
    assert [n for n, _ in grads] == [n for n, _ in named]
    assert all(a is b for a, (_, b) in zip(model.gradients(), grads))
    assert all(a.shape == g.shape for a, g in zip(model.parameters(), model.gradients()))
    single = Conv2d(1, 2, 3)
    assert [n for n, _ in single.named_parameters()] == ["weight", "bias"]


def test_state_dict_round_trip_numpy_and_torch():
    source, target = _model(1), _model(2)
    state = source.state_dict()
    assert list(state) == [n for n, _ in source.named_parameters()]
    assert all(state[n] is a for n, a in source.named_parameters())  # live arrays, as torch
    result = target.load_state_dict({k: np.array(v) for k, v in state.items()})
    assert result.missing_keys == [] and result.unexpected_keys == []
    for a, b in zip(source.parameters(), target.parameters()):
        assert a.tobytes() == b.tobytes()
    # torch tensors (requiring grad: detached), float64 converted to the layer's float32
    other = _model(3)
    tensors = {k: torch.from_numpy(np.array(v, np.float64)).requires_grad_() for k, v in
               other.state_dict().items()}
    held = target.parameters()[0]
    target.load_state_dict(tensors)
    assert target.parameters()[0] is held  # copied in place: an optimiser keeps its arrays
    for a, b in zip(other.parameters(), target.parameters()):
        np.testing.assert_array_equal(a, b)


def test_load_state_dict_errors_name_the_key_and_change_nothing():
    model = _model(1)
    good = {k: np.array(v) for k, v in _model(2).state_dict().items()}
    before = [np.array(a) for a in model.parameters()]

    def refused(state, error, match, **kw):
        with pytest.raises(error, match=match):
            model.load_state_dict(state, **kw)
        for b, a in zip(before, model.parameters()):
            np.testing.assert_array_equal(a, b)

    refused({k: v for k, v in good.items() if k != "fc.bias"}, ValueError,
            r"missing keys \['fc.bias'\]")
    refused({**good, "fc.extra": np.zeros(1)}, ValueError, r"unexpected keys \['fc.extra'\]")
    refused({**good, "fc.weight": np.zeros((5, 47))}, ValueError,
            r"state_dict\['fc.weight'\]: expected shape \(5, 48\), got \(5, 47\)")
    refused({**good, "conv.bias": np.zeros(3, np.int64)}, TypeError,
            r"state_dict\['conv.bias'\]: expected a float array .* got int64")
    refused({**good, "conv.bias": "three"}, TypeError, r"state_dict\['conv.bias'\]")
    refused([("conv.bias", np.zeros(3))], TypeError, "state_dict: expected a mapping")
    # strict=False loads what matches and reports the rest, as torch does
    partial = {"conv.weight": good["conv.weight"], "other": np.zeros(2)}
    result = model.load_state_dict(partial, strict=False)
    assert result.missing_keys == ["conv.bias", "fc.weight", "fc.bias"]
    assert result.unexpected_keys == ["other"]
    np.testing.assert_array_equal(model.parameters()[0], good["conv.weight"])


def _vgg16_counts():
    """Parameters and multiply-adds of VGG-16 at 224x224, counted here by hand."""
    params, macs, size, cin = 0, 0, 224, 3
    for block in ([64] * 2, [128] * 2, [256] * 3, [512] * 3, [512] * 3):
        for c in block:
            params += c * cin * 9 + c
            macs += size * size * c * cin * 9
            cin = c
        size //= 2
    for fin, fout in ((512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)):
        params += fin * fout + fout
        macs += fin * fout
    return params, macs


def test_summary_of_vgg16_lists_shapes_parameters_and_flops():
    model = vgg("D", materialize=False)  # shapes only: nothing allocated
    out = io.StringIO()
    rows = model.summary((1, 3, 224, 224), file=out)
    params, macs = _vgg16_counts()
    assert params == 138_357_544 == count_parameters(model)
    assert sum(r["parameters"] for r in rows) == params
    assert sum(r["flops"] for r in rows) == 2 * macs
    by_name = {r["name"]: r for r in rows}
    assert by_name["conv1_1"]["output_shape"] == (1, 64, 224, 224)
    assert by_name["pool5"]["output_shape"] == (1, 512, 7, 7)
    assert by_name["fc8"]["output_shape"] == (1, 1000)
    assert by_name["conv1_1"]["flops"] == 2 * 224 * 224 * 64 * 3 * 9
    text = out.getvalue()
    assert "conv5_3" in text and "(1, 512, 14, 14)" in text and "138,357,544" in text
    assert "30.94 G" in text  # 15.47 G multiply-adds, as usually quoted for VGG-16


def test_summary_walks_a_graph():
    model = alexnet(split=2, materialize=False)
    rows = model.summary((2, 3, 227, 227), file=False)
    by_name = {r["name"]: r for r in rows}
    assert by_name["conv1a"]["output_shape"] == (2, 48, 55, 55)
    assert by_name["concat5"]["output_shape"] == (2, 256, 6, 6)
    assert by_name["fc8"]["output_shape"] == (2, 1000)
    assert sum(r["parameters"] for r in rows) == count_parameters(model) == 60_965_224


def test_from_dlpack_shares_memory_with_torch():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    arr = deepconv.from_dlpack(t)
    assert isinstance(arr, np.ndarray) and deepconv.device_of(arr) == deepconv.device("emu:0")
    t[0, 0] = 42.0
    assert arr[0, 0] == 42.0  # one buffer, no copy
    moved = deepconv.from_dlpack(t, device="emu:1")
    assert deepconv.device_of(moved) == deepconv.device("emu:1") and moved[0, 0] == 42.0
    with pytest.raises(TypeError, match="obj: cannot be shared through DLPack"):
        deepconv.from_dlpack(torch.ones(2, requires_grad=True))
    with pytest.raises(TypeError, match="obj: expected an object with __dlpack__"):
        deepconv.from_dlpack([1.0, 2.0])


def test_torch_reads_deepconv_arrays_through_dlpack():
    x = deepconv.asarray(np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32),
                         device="emu:1")
    model = _model(4)
    model.to("emu:1")
    y = model.forward(x)
    t = torch.from_dlpack(y)  # the layer's output buffer, shared
    np.testing.assert_array_equal(t.numpy(), y)
    w = torch.from_dlpack(model.parameters()[0])
    w.zero_()
    assert not np.any(model.parameters()[0])
