"""Hybrid parallelism (conv data parallel, FC model parallel) over emulated
devices: one step agrees with one device on the same global batch (loss,
re-assembled gradients, updated weights), the transfer counter sees the
closed form, and VGG-16 on 4 devices at batch 256 moves <= 0.25x the bytes
of data parallelism."""

import numpy as np
import pytest

import deepconv
from deepconv import nn
from deepconv.models import alexnet_small, count_parameters, vgg, vgg_small
from deepconv.optim import SGD
from deepconv.parallel import Hybrid, communication_cost, hybrid_step_bytes, shard_sizes

BATCH, STEPS = 6, 2  # uneven shards on 4 devices: 2, 2, 1, 1


def net(dtype):
    # AlexNet's layer mix (grouped convs, LRN, overlapping pooling, dropout in
    # training mode): 10 classes split 5/5 or 3/3/2/2 over the devices.
    return alexnet_small(input_size=8, fc_width=16, dtype=dtype, seed=5)


def batch(dtype, step):
    rng = np.random.default_rng(step)
    x = rng.standard_normal((BATCH, 3, 8, 8)).astype(dtype)
    return deepconv.asarray(x), deepconv.asarray(rng.integers(0, 10, BATCH).astype(np.int32))


def sgd(params):
    return SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)


def train_one_device(dtype):
    model = net(dtype)
    opt, xent = sgd(model), nn.SoftmaxCrossEntropy()
    losses, grads = [], None
    for step in range(STEPS):
        x, y = batch(dtype, step)
        losses.append(float(xent.forward(model.forward(x), y)))
        model.backward(xent.backward())
        grads = {n: np.array(g) for n, g in model.named_gradients()}
        opt.step()
    return losses, grads, {n: np.array(w) for n, w in model.named_parameters()}


def train_hybrid(dtype, num_devices):
    hy = Hybrid(net(dtype), [f"emu:{d}" for d in range(num_devices)])
    opt = sgd(hy)
    losses = [hy.train_step(*batch(dtype, step), opt) for step in range(STEPS)]
    return hy, losses


# float64: only the order of a few partial sums differs (units of the input
# gradient, batch shards of the conv weight gradients); float32 the same at
# its epsilon, over two momentum steps.
TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


@pytest.mark.parametrize("num_devices", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_hybrid_step_matches_one_device_on_the_same_global_batch(dtype, num_devices):
    ref_losses, ref_grads, ref_weights = train_one_device(dtype)
    hy, losses = train_hybrid(dtype, num_devices)
    np.testing.assert_allclose(losses, ref_losses, **TOLERANCE[dtype])
    grads, weights = hy.assembled("gradients"), hy.assembled("parameters")
    assert list(weights) == list(ref_weights)
    for name in ref_weights:
        np.testing.assert_allclose(grads[name], ref_grads[name], err_msg=name, **TOLERANCE[dtype])
        np.testing.assert_allclose(weights[name], ref_weights[name], err_msg=name,
                                   **TOLERANCE[dtype])
    # each FC slice lives on its own device; conv replicas stay equal
    for stage in hy.stages:
        for dev, part in zip(hy.devices, stage.slices):
            assert all(deepconv.device_of(w) == dev for w in part.parameters())
    first = {n: np.array(w) for n, w in hy.conv.module.named_parameters()}
    for replica in hy.conv.replicas[1:]:
        for name, w in replica.named_parameters():
            assert np.array_equal(np.array(w), first[name]), name


@pytest.mark.parametrize("num_devices", [2, 4])
def test_transfer_counter_sees_exactly_the_closed_form(num_devices):
    model = net(np.float64)
    hy = Hybrid(model, [f"emu:{d}" for d in range(num_devices)])
    opt = sgd(hy)
    x, y = batch(np.float64, 0)
    deepconv.reset_transfer_stats()
    hy.train_step(x, y, opt)
    moved = deepconv.transfer_stats()
    # restated from the scheme: conv parameters gathered + broadcast; fc6's
    # input (16 conv features: 16 maps of 1x1) and fc7 / fc8's (16 units) all-gathered and
    # their gradients returned; the 10 logits gathered and sent back; input
    # shards (one 3x8x8 image each) from emu:0; the labels stay on emu:0
    others, item = num_devices - 1, 8
    conv = count_parameters(model) - sum(count_parameters(model[n]) for n in ("fc6", "fc7", "fc8"))
    fc = 2 * BATCH * (16 + 16 + 16) * others
    logits = 2 * BATCH * (10 - shard_sizes(10, num_devices)[0])
    images = (BATCH - shard_sizes(BATCH, num_devices)[0]) * 3 * 8 * 8 * item
    assert sum(moved.values()) == (2 * conv * others + fc + logits) * item + images
    assert sum(moved.values()) == hybrid_step_bytes(model, BATCH, num_devices, item,
                                                    example_bytes=3 * 8 * 8 * item)
    assert sum(moved.values()) == hy.step_bytes(BATCH, 3 * 8 * 8 * item)
    # every pair of devices talks (all-gathers), and no FC weight crossed:
    # far less than the FC parameters would cost
    assert len(moved) == num_devices * (num_devices - 1)
    fc_params = sum(count_parameters(model[n]) for n in ("fc6", "fc7", "fc8"))
    assert sum(moved.values()) < 2 * (conv + fc_params) * others * item


def test_vgg16_hybrid_moves_at_most_a_quarter_of_data_parallel():
    cost = communication_cost(vgg("D", materialize=False), batch=256, num_devices=4)
    assert cost.ratio <= 0.25
    assert cost.hybrid == hybrid_step_bytes(vgg("D", materialize=False), 256, 4)


def test_vgg_small_hybrid_and_collect(rng):
    """A second architecture (VGG, no LRN), and collect(): the model with
    the trained slices evaluates like the hybrid forward."""
    model = vgg_small("A", input_size=8, width=4, fc_width=16, dtype="float64", seed=2)
    hy = Hybrid(model, ["emu:0", "emu:1", "emu:3"])
    x = deepconv.asarray(rng.standard_normal((5, 3, 8, 8)))
    hy.train_step(x, deepconv.asarray(np.arange(5, dtype=np.int32)), sgd(hy))
    hy.eval()
    logits = np.array(hy.forward(x))
    collected = hy.collect().eval()
    assert collected is model
    np.testing.assert_allclose(np.array(collected.forward(x)), logits, rtol=1e-12, atol=1e-14)
    for name, w in collected.named_parameters():
        assert np.array_equal(np.array(w), hy.assembled()[name]), name


def test_hybrid_is_deterministic():
    a = train_hybrid(np.float32, 4)
    b = train_hybrid(np.float32, 4)
    assert a[1] == b[1]
    for name, w in a[0].assembled().items():
        assert np.array_equal(w, b[0].assembled()[name]), name


def test_hybrid_rejects_bad_models_and_batches():
    devices = ["emu:0", "emu:1"]
    with pytest.raises(TypeError, match="model: expected a deepconv.nn.Sequential"):
        Hybrid(alexnet_small(input_size=8, split=2), devices)
    conv = nn.Conv2d(1, 2, 3, padding=1)
    with pytest.raises(ValueError, match="model: expected a Flatten"):
        Hybrid(nn.Sequential(conv, nn.ReLU()), devices)
    with pytest.raises(ValueError, match="expected only Linear, ReLU and Dropout layers, got Conv2d"):
        Hybrid(nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.Conv2d(1, 1, 1)), devices)
    with pytest.raises(ValueError, match="end with a Linear"):
        Hybrid(nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.ReLU()), devices)
    with pytest.raises(ValueError, match="model: fc has 1 output units, fewer than the 2 devices"):
        Hybrid(nn.Sequential(nn.Flatten(), ("fc", nn.Linear(4, 1))), devices)
    with pytest.raises(ValueError, match="model: parameter .* is on emu:0, expected emu:1"):
        Hybrid(net(np.float32), ["emu:1", "emu:2"])
    with pytest.raises(ValueError, match="devices: expected distinct devices"):
        Hybrid(net(np.float32), ["emu:0", "emu:0"])
    hy = Hybrid(net(np.float32), ["emu:0", "emu:1", "emu:2"])
    x, y = batch(np.float32, 0)
    with pytest.raises(ValueError, match="x: expected a batch of at least 3 examples"):
        hy.forward(x[:2])
    with pytest.raises(ValueError, match="y: expected 6 labels"):
        hy.forward_backward(x, y[:5])
    with pytest.raises(RuntimeError, match="forward first"):
        Hybrid(net(np.float32), devices).backward(x)
    with pytest.raises(ValueError, match="kind: expected 'parameters' or 'gradients'"):
        hy.assembled("weights")
