"""Data parallelism over emulated devices in one process, the transfer
counts it produces, device-mixing errors at the layer level, and the
closed-form communication counts of benchmarks/parallel.py (model
parallelism: test_model_parallel.py; hybrid: test_hybrid.py)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deepconv
from deepconv.models import alexnet, count_parameters, digits_net, vgg
from deepconv.nn import Conv2d, ReLU, Sequential, SoftmaxCrossEntropy
from deepconv.optim import SGD
from deepconv.parallel import (DataParallel, communication_cost, data_parallel_step_bytes,
                               shard_sizes)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
STEPS = 3
BATCH = 10  # uneven shards on 4 devices: 3, 3, 2, 2


def tiny_net(dtype, device="emu:0"):
    return digits_net(width=4, seed=7, dtype=dtype, device=device)


def batch(dtype, n=BATCH, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 8, 8)).astype(dtype)
    y = rng.integers(0, 10, n).astype(np.int32)
    return deepconv.asarray(x), deepconv.asarray(y)


def train_one_device(dtype):
    model = tiny_net(dtype)
    opt = SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
    criterion = SoftmaxCrossEntropy()
    losses = []
    for step in range(STEPS):
        x, y = batch(dtype, seed=step)
        losses.append(float(criterion.forward(model.forward(x), y)))
        model.backward(criterion.backward())
        opt.step()
    return model, losses


def train_data_parallel(dtype, num_devices, factory=False):
    devices = [f"emu:{d}" for d in range(num_devices)]
    model = (lambda dev: tiny_net(dtype, dev)) if factory else tiny_net(dtype)
    dp = DataParallel(model, devices)
    opt = SGD(dp.module, lr=0.1, momentum=0.9, weight_decay=5e-4)
    losses = [dp.train_step(*batch(dtype, seed=step), opt) for step in range(STEPS)]
    return dp, losses


def weights(model):
    return {name: np.array(deepconv.to_numpy(w)) for name, w in model.named_parameters()}


# float32: the D partial batch sums inside wgrad round differently from one
# sum over the batch (a few ulps a step, amplified by 3 momentum steps).
# float64: the same reordering, at float64's epsilon; 1e-12 relative leaves
# a margin of ~1000 ulps and would catch any real mismatch (a wrong shard
# scale is off by 1e-1).
TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


@pytest.mark.parametrize("num_devices", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_data_parallel_matches_one_device_on_the_same_global_batch(dtype, num_devices):
    reference, ref_losses = train_one_device(dtype)
    dp, losses = train_data_parallel(dtype, num_devices)
    np.testing.assert_allclose(losses, ref_losses, **TOLERANCE[dtype])
    expected = weights(reference)
    for replica, dev in zip(dp.replicas, dp.devices):
        for name, w in replica.named_parameters():
            assert deepconv.device_of(w) == dev
        got = weights(replica)
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], err_msg=name, **TOLERANCE[dtype])
    # the broadcast leaves every replica bitwise equal to the first
    first = weights(dp.module)
    for replica in dp.replicas[1:]:
        for name, w in weights(replica).items():
            assert np.array_equal(w, first[name]), name


def test_data_parallel_from_a_factory_trains_like_from_a_model():
    a, _ = train_data_parallel(np.float64, 2)
    b, _ = train_data_parallel(np.float64, 2, factory=True)
    for name, w in weights(a.module).items():
        assert np.array_equal(w, weights(b.module)[name]), name


def test_data_parallel_is_deterministic():
    a, la = train_data_parallel(np.float32, 4)
    b, lb = train_data_parallel(np.float32, 4)
    assert la == lb
    for name, w in weights(a.module).items():
        assert np.array_equal(w, weights(b.module)[name]), name


@pytest.mark.parametrize("num_devices", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_transfer_counter_sees_exactly_the_closed_form_bytes_per_step(dtype, num_devices):
    dp = DataParallel(tiny_net(dtype), [f"emu:{d}" for d in range(num_devices)])
    opt = SGD(dp.module, lr=0.1)
    x, y = batch(dtype)
    deepconv.reset_transfer_stats()
    dp.train_step(x, y, opt)
    params = count_parameters(dp.module)
    item = np.dtype(dtype).itemsize
    example = 64 * item + 4  # one 1x8x8 image and one int32 label
    sizes = shard_sizes(BATCH, num_devices)
    expected = {}
    for d in range(1, num_devices):
        expected[(f"emu:{d}", "emu:0")] = params * item                         # gradients
        expected[("emu:0", f"emu:{d}")] = params * item + sizes[d] * example     # weights + shard
    assert deepconv.transfer_stats() == expected
    total = sum(expected.values())
    assert total == 2 * params * (num_devices - 1) * item + (BATCH - sizes[0]) * example
    assert total == data_parallel_step_bytes(params, num_devices, item, batch=BATCH,
                                             example_bytes=example)
    assert total == dp.step_bytes(BATCH, example)


def test_replication_is_counted():
    model = tiny_net(np.float32)
    params = count_parameters(model)
    DataParallel(model, ["emu:0", "emu:2"])  # a deep copy moved by Layer.to: weights and grads
    assert deepconv.transfer_stats() == {("emu:0", "emu:2"): 2 * params * 4}
    deepconv.reset_transfer_stats()
    DataParallel(lambda dev: tiny_net(np.float32, dev), ["emu:0", "emu:2"])  # weights only
    assert deepconv.transfer_stats() == {("emu:0", "emu:2"): params * 4}


def test_one_device_moves_nothing_and_matches_plain_training():
    reference, ref_losses = train_one_device(np.float64)
    dp, losses = train_data_parallel(np.float64, 1)
    assert deepconv.transfer_stats() == {}
    assert losses == ref_losses
    for name, w in weights(reference).items():
        assert np.array_equal(weights(dp.module)[name], w), name


def test_shard_sizes():
    assert shard_sizes(10, 4) == [3, 3, 2, 2]
    assert shard_sizes(8, 2) == [4, 4]
    assert sum(shard_sizes(257, 4)) == 257


def test_data_parallel_rejects_bad_arguments():
    model = tiny_net(np.float32)
    with pytest.raises(ValueError, match="devices: expected at least one"):
        DataParallel(model, [])
    with pytest.raises(ValueError, match="distinct"):
        DataParallel(model, ["emu:0", "emu:0"])
    with pytest.raises(TypeError, match="devices"):
        DataParallel(model, "emu:0")
    with pytest.raises(ValueError, match=r"devices\[1\]"):
        DataParallel(model, ["emu:0", "gpu:1"])
    with pytest.raises(ValueError, match="model: parameter .* is on emu:0, expected emu:1"):
        DataParallel(model, ["emu:1", "emu:2"])
    with pytest.raises(TypeError, match="model"):
        DataParallel(42, ["emu:0"])
    dp = DataParallel(model, ["emu:0", "emu:1", "emu:2"])
    x, y = batch(np.float32, n=2)
    with pytest.raises(ValueError, match="x: expected a batch of at least 3 examples"):
        dp.forward_backward(x, y)
    x, y = batch(np.float32, n=6)
    with pytest.raises(ValueError, match="y: expected 6 labels"):
        dp.forward_backward(x, y[:5])


# --- mixing devices without a transfer -------------------------------------------------


def test_a_layer_on_one_emulated_device_refuses_an_input_on_another():
    conv = Conv2d(1, 2, 3, padding=1, device="emu:1").reset_parameters(0)
    x = deepconv.zeros((1, 1, 4, 4), device="emu:0")
    with pytest.raises(ValueError, match="arrays are on different devices: x is on emu:0"):
        conv.forward(x)
    net = Sequential(Conv2d(1, 2, 3, padding=1, device="emu:1"), ReLU()).reset_parameters(0)
    with pytest.raises(ValueError, match="different devices"):
        net.forward(x)
    assert deepconv.transfer_stats() == {}  # nothing was moved behind the user's back
    y = net.forward(deepconv.to_device(x, "emu:1"))  # the explicit transfer works
    assert deepconv.device_of(y) == deepconv.device("emu:1")


# --- closed forms and the benchmark ------------------------------------------------------


def test_hybrid_cost_of_vgg16_on_four_devices():
    model = vgg("D", materialize=False)
    cost = communication_cost(model, batch=256, num_devices=4)
    params, conv = 138_357_544, 14_714_688
    assert cost.data_parallel == 2 * params * 3 * 4
    assert cost.hybrid_conv_gradients == 2 * conv * 3 * 4
    # FC inputs all-gathered and returned; the logits (250 per device) gathered
    # onto emu:0 for the loss and their gradient sent back
    assert cost.hybrid_fc_activations == (2 * 256 * (25088 + 4096 + 4096) * 3
                                          + 2 * 256 * 750) * 4
    assert cost.ratio <= 0.25


def test_alexnet_cost_uses_the_whole_parameter_count():
    cost = communication_cost(alexnet(materialize=False), batch=128, num_devices=2)
    assert cost.data_parallel == 2 * 60_965_224 * 4
    assert communication_cost(alexnet(materialize=False), 128, 1).data_parallel == 0


def test_benchmark_prints_closed_forms_and_measured_bytes(tmp_path):
    # --quick: the full-size data-parallel replicas (~1 min, ~4 GB) are skipped
    out = subprocess.run([sys.executable, str(BENCHMARKS / "parallel.py"), "--json", "--quick"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cases = {("VGG-16", 2), ("VGG-16", 4), ("AlexNet", 2), ("AlexNet", 4)}
    assert {(r["model"], r["devices"]) for r in result["closed_form"]} == cases
    assert result["vgg16_4dev_hybrid_over_data_parallel"] <= 0.25
    for row in result["closed_form"]:
        assert row["model_parallel_bytes"] > row["hybrid_bytes"] > 0
    assert {(r["model"], r["devices"]) for r in result["measured_full_size"]} == cases
    for row in result["measured_full_size"]:
        assert row["hybrid_bytes"] > 0 and row["matches_closed_form"], row
    assert {r["scheme"] for r in result["measured"]} == {"data parallel", "model parallel",
                                                         "hybrid"}
    for row in result["measured"]:
        assert row["measured_bytes"] == row["closed_form_bytes"]
