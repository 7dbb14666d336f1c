"""deepconv.nn: layers, Sequential and Graph on the emulator: numeric
gradient checks of whole graphs, ReLU fusion, buffer reuse, modes, devices
and bad arguments."""

import numpy as np
import pytest

import deepconv
from deepconv import nn
from deepconv.testing import assert_gradient_close, assert_race_free, numeric_gradient

from conftest import assert_bitwise_equal


def small_chain(fuse=True, seed=1, dtype="float64"):
    """conv -> relu -> pool -> lrn -> flatten -> linear, tiny."""
    return nn.Sequential(
        ("conv", nn.Conv2d(2, 3, 3, padding=1, weight_init=0.5, bias_init=0.1, dtype=dtype,
                           rng=seed)),
        ("relu", nn.ReLU()),
        ("pool", nn.MaxPool2d(3, 2)),
        ("lrn", nn.LRN(size=3, alpha=0.5, beta=0.75, k=1.0)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(3 * 2 * 2, 4, weight_init=0.5, dtype=dtype, rng=seed + 1)),
        fuse=fuse,
    )


def loss_of(model, x, labels):
    xent = nn.SoftmaxCrossEntropy()
    return float(xent.forward(model.forward(x), labels))


def check_model_gradients(model, x, labels, rtol=1e-5, atol=1e-8):
    """Analytic gradients of the mean cross-entropy of ``model(x)`` with
    respect to x and every parameter, against central differences."""
    xent = nn.SoftmaxCrossEntropy()
    xent.forward(model.forward(x), labels)
    dx = model.backward(xent.backward())
    analytic = {"x": np.array(dx)}
    analytic.update({name: np.array(g) for name, g in model.named_gradients()})
    targets = {"x": x, **dict(model.named_parameters())}
    for name, arr in targets.items():
        numeric = numeric_gradient(lambda: loss_of(model, x, labels), arr)
        assert_gradient_close(analytic[name], numeric, rtol=rtol, atol=atol, name=name)


def test_whole_chain_gradient_float64(rng):
    """conv -> relu -> pool -> lrn -> flatten -> linear -> softmax-xent."""
    model = small_chain()
    x = deepconv.asarray(rng.standard_normal((2, 2, 6, 6)))
    check_model_gradients(model, x, np.array([1, 3], np.int64))


def test_graph_gradient_with_split_concat_and_fan_out(rng):
    """Two columns reading the same input (fan-out: gradients summed), a
    Split, a Concat, and a node read by two consumers."""
    kw = dict(dtype="float64", weight_init=0.5)
    g = nn.Graph()
    a = g.add("conv_a", nn.Conv2d(2, 2, 3, padding=1, rng=1, **kw), "input", group="column0")
    a = g.add("relu_a", nn.ReLU(), a, group="column0")
    b = g.add("conv_b", nn.Conv2d(2, 4, 3, padding=1, rng=2, **kw), "input", group="column1")
    b0, b1 = g.add("split_b", nn.Split([1, 3]), b, group="column1")
    cat = g.add("cat", nn.Concat(), a, b1, b0)
    p = g.add("pool", nn.MaxPool2d(2), cat)
    f1 = g.add("fc1", nn.Linear(6 * 2 * 2, 3, rng=3, **kw), p)
    f2 = g.add("fc2", nn.Linear(6 * 2 * 2, 3, rng=4, **kw), p)
    s = g.add("sum", nn.Concat(), f1, f2)
    g.output(s)
    assert g.groups() == {"column0": ["conv_a", "relu_a"], "column1": ["conv_b", "split_b"],
                          None: ["cat", "pool", "fc1", "fc2", "sum"]}
    assert g.output_shape((2, 2, 4, 4)) == (2, 6)
    x = deepconv.asarray(rng.standard_normal((2, 2, 4, 4)))
    check_model_gradients(g, x, np.array([0, 5], np.int32))
    assert g["conv_a"].relu and g["relu_a"].fused  # fused inside the graph too


def test_training_step_is_race_free(rng):
    """Forward and backward of a whole net give bitwise the same outputs and
    gradients under the emulator's shuffled schedules."""
    model = small_chain(dtype="float32")
    dy = deepconv.asarray(rng.standard_normal((2, 4)), dtype="float32")

    def step(x):
        y = np.array(model.forward(x))
        dx = np.array(model.backward(dy))
        return [y, dx] + [np.array(g) for g in model.gradients()]

    assert_race_free(step, deepconv.asarray(rng.standard_normal((2, 2, 6, 6)), dtype="float32"))


def test_fused_relu_matches_unfused(rng):
    x = deepconv.asarray(rng.standard_normal((2, 2, 6, 6)))
    dy = deepconv.asarray(rng.standard_normal((2, 4)))
    fused, plain = small_chain(fuse=True), small_chain(fuse=False)
    assert fused["conv"].relu and fused["relu"].fused
    assert not plain["conv"].relu and not plain["relu"].fused
    assert_bitwise_equal(fused.forward(x), plain.forward(x))
    assert_bitwise_equal(fused.backward(dy), plain.backward(dy))
    for a, b in zip(fused.gradients(), plain.gradients()):
        assert_bitwise_equal(a, b)


def test_buffers_reused_between_steps(rng):
    model = small_chain(dtype="float32")
    x = deepconv.asarray(rng.standard_normal((2, 2, 6, 6)), dtype="float32")
    dy = deepconv.asarray(rng.standard_normal((2, 4)), dtype="float32")
    y1, dx1 = model.forward(x), model.backward(dy)
    grads1 = model.gradients()
    y2, dx2 = model.forward(x), model.backward(dy)
    assert np.shares_memory(y1, y2) and np.shares_memory(dx1, dx2)
    assert all(a is b for a, b in zip(grads1, model.gradients()))
    # A new batch size gets new buffers; the old shape's are not kept around.
    y3 = model.forward(x[:1])
    assert y3.shape == (1, 4) and not np.shares_memory(y3, y1)


@pytest.mark.parametrize("shape", [(3, 12), (3, 3, 2, 2)])
def test_linear_matches_numpy(shape, rng):
    layer = nn.Linear(12, 5, bias_init=0.25, dtype="float64", rng=0)
    x = rng.standard_normal(shape)
    w, b = (np.array(a) for a in layer.parameters())
    y = layer.forward(deepconv.asarray(x))
    np.testing.assert_allclose(y, x.reshape(3, 12) @ w.T + b, rtol=1e-12)
    dy = rng.standard_normal((3, 5))
    dx = layer.backward(deepconv.asarray(dy))
    assert dx.shape == shape
    np.testing.assert_allclose(dx, (dy @ w).reshape(shape), rtol=1e-12)
    np.testing.assert_allclose(layer.grads["weight"], dy.T @ x.reshape(3, 12), rtol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], dy.sum(0), rtol=1e-12)


def test_linear_as_conv2d_shares_weights_and_evaluates_densely(rng):
    fc = nn.Linear(3 * 2 * 2, 4, rng=0, dtype="float64")
    conv = fc.as_conv2d(2)
    assert conv.weight_shape == (4, 3, 2, 2)
    assert np.shares_memory(conv.params["weight"], fc.params["weight"])
    assert np.shares_memory(conv.grads["bias"], fc.grads["bias"])
    x = rng.standard_normal((2, 3, 2, 2))
    np.testing.assert_allclose(conv.forward(deepconv.asarray(x))[:, :, 0, 0],
                               fc.forward(deepconv.asarray(x)), rtol=1e-13)
    # Slid over a bigger image: one classifier output per 2x2 position.
    big = rng.standard_normal((1, 3, 3, 4))
    dense = conv.forward(deepconv.asarray(big))
    assert dense.shape == (1, 4, 2, 3)
    np.testing.assert_allclose(dense[0, :, 1, 2],
                               fc.forward(deepconv.asarray(big[:, :, 1:3, 2:4].copy()))[0], rtol=1e-13)
    with pytest.raises(ValueError, match="input_hw"):
        fc.as_conv2d(3)


def test_dropout_draws_a_new_mask_each_step_and_backward_reuses_it(rng):
    layer = nn.Dropout(0.5, seed=7)
    x = deepconv.asarray(np.ones((4, 64), np.float32))
    y0 = np.array(layer.forward(x))
    dx0 = np.array(layer.backward(x))
    y1 = np.array(layer.forward(x))
    assert layer.step == 2
    assert set(np.unique(y0)) <= {0.0, 2.0}  # inverted dropout: kept / (1 - p)
    assert not np.array_equal(y0, y1)
    np.testing.assert_array_equal(dx0, y0)  # ones in, so the gradient is the mask
    layer.eval()
    assert layer.forward(x) is x and layer.backward(x) is x and layer.step == 2
    paper = nn.Dropout(0.5, scale_at="test").eval()
    np.testing.assert_array_equal(paper.forward(x), np.full((4, 64), 0.5, np.float32))
    replay = nn.Dropout(0.5, seed=7)
    np.testing.assert_array_equal(replay.forward(x), y0)  # same seed and step, same mask


def test_softmax_cross_entropy_layer(rng):
    logits = rng.standard_normal((3, 5))
    labels = np.array([0, 4, 2])
    layer = nn.SoftmaxCrossEntropy()
    loss = layer.forward(deepconv.asarray(logits.reshape(3, 5, 1, 1)), labels)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(float(loss), -np.log(p[np.arange(3), labels]).mean(), rtol=1e-12)
    d = layer.backward()
    assert d.shape == (3, 5, 1, 1)
    p[np.arange(3), labels] -= 1
    np.testing.assert_allclose(d[:, :, 0, 0], p / 3, rtol=1e-12, atol=1e-15)


def test_modes_devices_and_materialize(rng):
    model = small_chain(dtype="float32")
    assert model.training and model["relu"].training
    model.eval()
    assert not model.training and not model["pool"].training
    model.train()
    model.to("emu:1")
    assert all(deepconv.device_of(a) == deepconv.device("emu:1") for a in model.parameters())
    assert all(deepconv.device_of(a) == deepconv.device("emu:1") for a in model.gradients())
    x1 = deepconv.asarray(rng.standard_normal((1, 2, 6, 6)), dtype="float32", device="emu:1")
    assert deepconv.device_of(model.forward(x1)) == deepconv.device("emu:1")
    with pytest.raises(ValueError, match="different devices"):
        model.forward(deepconv.asarray(np.zeros((1, 2, 6, 6), np.float32)))
    lazy = nn.Conv2d(3, 4, 3, materialize=False)
    assert nn.count_parameters(lazy) == 4 * 3 * 9 + 4 and not lazy.materialized
    with pytest.raises(RuntimeError, match="reset_parameters"):
        lazy.parameters()
    lazy.reset_parameters(0)
    assert lazy.materialized and lazy.params["weight"].shape == (4, 3, 3, 3)


def test_reset_parameters_is_seeded_and_in_place():
    a = nn.Conv2d(3, 4, 3, rng=5)
    b = nn.Conv2d(3, 4, 3, rng=5)
    assert_bitwise_equal(a.params["weight"], b.params["weight"])
    w = a.params["weight"]
    a.reset_parameters(6)
    assert a.params["weight"] is w and not np.array_equal(w, b.params["weight"])
    glorot = nn.Conv2d(8, 16, 3, weight_init="glorot", rng=0)
    limit = np.sqrt(6 / (8 * 9 + 16 * 9))
    assert np.abs(glorot.params["weight"]).max() <= limit


def test_output_shapes_are_symbolic():
    model = nn.Sequential(nn.Conv2d(3, 8, 11, stride=4, materialize=False), nn.ReLU(),
                          nn.MaxPool2d(3, 2), nn.Flatten(), nn.Linear(8 * 27 * 27, 10, materialize=False))
    assert model.output_shape((2, 3, 227, 227)) == (2, 10)
    with pytest.raises(ValueError, match="channels"):
        model.output_shape((2, 4, 227, 227))
    assert nn.Split(2).output_shape((1, 6, 2, 2)) == ((1, 3, 2, 2), (1, 3, 2, 2))
    assert nn.Concat().output_shape((1, 2, 3, 3), (1, 5, 3, 3)) == (1, 7, 3, 3)


def test_repr_shows_non_default_arguments():
    assert repr(nn.Conv2d(3, 8, 3, padding=1, materialize=False)) == "Conv2d(3, 8, kernel_size=3, padding=1)"
    assert repr(nn.MaxPool2d(3, 2)) == "MaxPool2d(3, stride=2)"
    assert repr(nn.LRN(alpha_convention="per_size")) == "LRN(alpha_convention='per_size')"
    assert repr(nn.Linear(4, 2, materialize=False)) == "Linear(4, 2)"
    assert "(relu): ReLU()" in repr(small_chain())


@pytest.mark.parametrize("build, error, match", [
    (lambda: nn.Conv2d(0, 4, 3), ValueError, "in_channels"),
    (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, "groups"),
    (lambda: nn.Conv2d(4, 4, (3, 3, 3)), TypeError, "kernel_size"),
    (lambda: nn.Conv2d(4, 4, 3, padding=-1), ValueError, "padding"),
    (lambda: nn.Conv2d(4, 4, 3, weight_init="he"), ValueError, "weight_init"),
    (lambda: nn.Conv2d(4, 4, 3, dtype="int32"), TypeError, "dtype"),
    (lambda: nn.Conv2d(4, 4, 3, device="emu:99"), ValueError, "device"),
    (lambda: nn.Linear(4, 0), ValueError, "out_features"),
    (lambda: nn.Linear(4, 2, bias=1), TypeError, "bias"),
    (lambda: nn.MaxPool2d(2, padding=2), ValueError, "padding"),
    (lambda: nn.LRN(size=4), ValueError, "size"),
    (lambda: nn.LRN(k=0.0), ValueError, "k"),
    (lambda: nn.LRN(alpha_convention="caffe"), ValueError, "alpha_convention"),
    (lambda: nn.Dropout(1.0), ValueError, "p"),
    (lambda: nn.Dropout(0.5, seed=-1), ValueError, "seed"),
    (lambda: nn.Dropout(0.5, scale_at="eval"), ValueError, "scale_at"),
    (lambda: nn.Split([]), ValueError, "sections"),
    (lambda: nn.Sequential(nn.ReLU(), 3), TypeError, r"layers\[1\]"),
    (lambda: nn.Sequential(("a", nn.ReLU()), ("a", nn.ReLU())), ValueError, "duplicate"),
])
def test_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_bad_inputs_name_the_argument():
    conv = nn.Conv2d(3, 4, 3, materialize=False)
    with pytest.raises(ValueError, match="x: expected 3 channels"):
        conv.forward(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(RuntimeError, match="forward first"):
        nn.MaxPool2d(2).backward(np.zeros((1, 1, 1, 1), np.float32))
    with pytest.raises(ValueError, match="x: expected 12 features"):
        nn.Linear(12, 2).forward(np.zeros((2, 11), np.float32))
    g = nn.Graph()
    with pytest.raises(ValueError, match="inputs"):
        g.add("c", nn.Concat())
    with pytest.raises(ValueError, match="no input or earlier node"):
        g.add("r", nn.ReLU(), "missing")
    s = g.add("s", nn.Split(2), "input")
    with pytest.raises(ValueError, match="2 outputs"):
        g.add("r", nn.ReLU(), "s")
    with pytest.raises(RuntimeError, match="output"):
        g.forward(np.zeros((1, 2, 1, 1), np.float32))
    assert s == ("s:0", "s:1")


def test_graph_multi_output_backward_fills_missing_gradients(rng):
    g = nn.Graph()
    a, b = g.add("split", nn.Split(2), "input")
    g.add("relu", nn.ReLU(), a)
    g.output("relu")  # the second half of the split is unused
    x = deepconv.asarray(rng.standard_normal((1, 4, 2, 2)))
    y = g.forward(x)
    dx = g.backward(deepconv.asarray(np.ones_like(y)))
    expected = np.zeros((1, 4, 2, 2))
    expected[:, :2] = np.array(x)[:, :2] > 0
    np.testing.assert_array_equal(dx, expected)
