"""Model parallelism by graph placement: AlexNet's two columns on two
emulated devices give bitwise the outputs, gradients and SGD steps of the
same graph on one device, and the transfer counter sees exactly the
activations the paper's columns exchange (nothing else)."""

import copy

import numpy as np
import pytest

import deepconv
from deepconv import nn
from deepconv.models import alexnet, alexnet_small
from deepconv.optim import SGD
from deepconv.parallel import model_parallel_bytes

COLUMNS = {"column0": "emu:0", "column1": "emu:1", "classifier": "emu:0"}
BATCH, SIZE = 2, 32


def small(**kw):
    return alexnet_small(input_size=SIZE, fc_width=16, split=2, dtype="float64", seed=3, **kw)


def data(rng, n=BATCH, size=SIZE, dtype=np.float64):
    x = deepconv.asarray(rng.standard_normal((n, 3, size, size)).astype(dtype))
    return x, np.arange(n, dtype=np.int32) % 10


def host(named):
    return {name: np.array(a) for name, a in named}


def train_steps(model, x, labels, steps=2):
    """``steps`` SGD steps in training mode (dropout on); per step the
    logits and the loss, and the final gradients and weights."""
    opt = SGD(model, lr=0.05, momentum=0.9, weight_decay=5e-4)
    xent = nn.SoftmaxCrossEntropy()
    trace = []
    for _ in range(steps):
        logits = model.forward(x)
        trace.append((np.array(logits), float(xent.forward(logits, labels))))
        model.backward(xent.backward())
        opt.step()
    return trace, host(model.named_gradients()), host(model.named_parameters())


def exchanged_bytes(n, itemsize):
    """The paper's exchange for alexnet_small(input_size=32, fc_width=16)
    split in two, from its geometry: each column's half of pool2 (8 maps of
    8x8), of pool5 (8 maps of 4x4) and of fc6's output (8 units) goes to
    the other column, column 1's half of fc7's output (8 units) to the
    classifier, each with its gradient back; the images go to column 1
    (forward only)."""
    half = n * (8 * 8 * 8 + 8 * 4 * 4 + 8)
    fc7 = n * 8
    forward = {("emu:0", "emu:1"): (n * 3 * SIZE * SIZE + half) * itemsize,
               ("emu:1", "emu:0"): (half + fc7) * itemsize}
    backward = {("emu:0", "emu:1"): (half + fc7) * itemsize,
                ("emu:1", "emu:0"): half * itemsize}
    return forward, backward


def test_alexnet_small_two_devices_trains_bitwise_like_one_device(rng):
    x, labels = data(rng)
    one = small()
    two = small().place(COLUMNS)
    assert {str(deepconv.device_of(w)) for n, w in two.named_parameters() if n.startswith(("conv1b", "fc7b"))} \
        == {"emu:1"}
    assert str(deepconv.device_of(two["fc8"].params["weight"])) == "emu:0"
    ref_trace, ref_grads, ref_weights = train_steps(one, x, labels)
    trace, grads, weights = train_steps(two, x, labels)
    for (a, la), (b, lb) in zip(ref_trace, trace):
        assert np.array_equal(a, b) and la == lb
    assert grads.keys() == ref_grads.keys()  # checkpoint names unchanged
    for name in ref_grads:
        assert np.array_equal(grads[name], ref_grads[name]), name
        assert np.array_equal(weights[name], ref_weights[name]), name


def test_placed_columns_move_exactly_the_papers_activations(rng):
    model = small().place(COLUMNS)
    x, labels = data(rng)
    xent = nn.SoftmaxCrossEntropy()
    deepconv.reset_transfer_stats()
    logits = model.forward(x)
    forward = deepconv.transfer_stats()
    deepconv.reset_transfer_stats()
    xent.forward(logits, labels)
    model.backward(xent.backward())
    backward = deepconv.transfer_stats()
    assert (forward, backward) == exchanged_bytes(BATCH, 8)
    one_tower = alexnet_small(input_size=SIZE, fc_width=16, materialize=False)
    assert sum(forward.values()) + sum(backward.values()) == model_parallel_bytes(
        one_tower, (BATCH, 3, SIZE, SIZE), 2, itemsize=8)


def test_pinning_the_joins_to_one_device_moves_more(rng):
    """Mapping the ungrouped Concat nodes to emu:0 (instead of leaving them
    free) sends column 1 its whole conv3 input from emu:0: 3 halves instead
    of the paper's 2 at each column crossing."""
    free, pinned = small().place(COLUMNS), small().place({**COLUMNS, None: "emu:0"})
    assert free.placement.keys() == pinned.placement.keys() - {"concat2", "concat5", "concat6",
                                                               "concat7"}
    x, _ = data(rng)
    moved = []
    for model in (free, pinned):
        deepconv.reset_transfer_stats()
        model.forward(x)
        moved.append(deepconv.transfer_stats())
    half2 = BATCH * 8 * 8 * 8 * 8  # pool2b: 8 channels of 8x8, float64
    assert moved[1][("emu:0", "emu:1")] - moved[0][("emu:0", "emu:1")] > half2
    assert np.array_equal(free.forward(x), pinned.forward(x))


def test_full_size_alexnet_split_over_two_devices_matches_one_device():
    """The paper's geometry (227x227, 61M parameters), one image: forward
    and backward on two devices, then the same graph moved to one."""
    model = alexnet(split=2, devices=("emu:0", "emu:1"), seed=1)
    assert model.placement["conv5b"] == deepconv.device("emu:1")
    rng = np.random.default_rng(0)
    x = deepconv.asarray(rng.standard_normal((1, 3, 227, 227)).astype(np.float32))
    labels = np.array([7], np.int32)
    xent = nn.SoftmaxCrossEntropy()
    results = []
    for _ in range(2):
        deepconv.reset_transfer_stats()
        model.eval()  # deterministic either way; eval keeps the run short of dropout launches
        logits = np.array(model.forward(x))
        xent.forward(deepconv.asarray(logits), labels)
        model.backward(xent.backward())
        results.append((logits, host(model.named_gradients()), deepconv.transfer_stats()))
        model.to("emu:0")
    (a, ga, moved), (b, gb, none) = results
    assert np.array_equal(a, b)
    for name in ga:
        assert np.array_equal(ga[name], gb[name]), name
    assert none == {}
    half = lambda c, s: c * s * s * 4  # one image, float32
    across = half(128, 13) + half(128, 6) + half(2048, 1)  # pool2, pool5, fc6 halves
    assert moved == {("emu:0", "emu:1"): 3 * 227 * 227 * 4 + 2 * across + half(2048, 1),
                     ("emu:1", "emu:0"): 2 * across + half(2048, 1)}
    assert sum(moved.values()) == model_parallel_bytes(alexnet(materialize=False),
                                                       (1, 3, 227, 227), 2)


def test_place_with_layers_built_on_their_devices(rng):
    """``place()`` without a map keeps every layer where ``device=`` put it;
    parameterless nodes follow their input (one input) or their readers
    (a join)."""
    kw = dict(dtype="float64", weight_init=0.5)
    g = nn.Graph()
    a = g.add("conv_a", nn.Conv2d(2, 3, 3, padding=1, rng=1, device="emu:0", **kw), "input")
    a = g.add("pool_a", nn.MaxPool2d(2), a)
    b = g.add("conv_b", nn.Conv2d(2, 3, 3, padding=1, rng=2, device="emu:2", **kw), "input")
    b = g.add("pool_b", nn.MaxPool2d(2), b)
    cat = g.add("cat", nn.Concat(), a, b)
    g.add("fc", nn.Linear(6 * 2 * 2, 4, rng=3, device="emu:2", **kw), cat)
    g.output("fc")
    x = deepconv.asarray(rng.standard_normal((2, 2, 4, 4)))
    labels = np.array([1, 3], np.int32)
    ref = _loss_and_grads(_on_one_device(g), x, labels)
    assert g.place() is g and g.placement == {"conv_a": deepconv.device("emu:0"),
                                              "conv_b": deepconv.device("emu:2"),
                                              "fc": deepconv.device("emu:2")}
    deepconv.reset_transfer_stats()
    got = _loss_and_grads(g, x, labels)
    # x to emu:2 and conv_b's input gradient back; pool_a's output to emu:2
    # (cat runs where fc reads it) and its gradient back
    pooled = 2 * 3 * 2 * 2 * 8
    assert deepconv.transfer_stats() == {("emu:0", "emu:2"): x.nbytes + pooled,
                                         ("emu:2", "emu:0"): x.nbytes + pooled}
    assert got[0] == ref[0]
    for name in ref[1]:
        assert np.array_equal(got[1][name], ref[1][name]), name


def _on_one_device(g):
    return copy.deepcopy(g).to("emu:0")


def _loss_and_grads(model, x, labels):
    xent = nn.SoftmaxCrossEntropy()
    logits = model.forward(x)
    # labels built on the logits' device (not a transfer between devices)
    labels = deepconv.asarray(labels.tolist(), dtype="int32", device=deepconv.device_of(logits))
    loss = float(xent.forward(logits, labels))
    model.backward(xent.backward())
    return loss, host(model.named_gradients())


def test_node_name_overrides_its_group():
    g = small(materialize=False).place(dict(COLUMNS, fc8="emu:3"))
    assert g.placement["fc8"] == deepconv.device("emu:3")
    assert g["fc8"].device == deepconv.device("emu:3")
    assert g.placement["fc7a"] == deepconv.device("emu:0")


def test_placement_errors_name_the_argument():
    g = small(materialize=False)
    with pytest.raises(ValueError, match="device_map: 'column2' is neither a node nor a group"):
        g.place({"column0": "emu:0", "column2": "emu:1"})
    with pytest.raises(ValueError, match="device_map: node 'conv1b' .* has parameters but no device"):
        g.place({"column0": "emu:0", "classifier": "emu:0"})
    with pytest.raises(ValueError, match=r"device_map\['column1'\]"):
        g.place(dict(COLUMNS, column1="gpu:1"))
    with pytest.raises(TypeError, match="device_map: expected group or node names"):
        g.place({0: "emu:0"})
    assert g.placement is None  # nothing half-applied
    with pytest.raises(ValueError, match="devices: only for split=2"):
        alexnet(devices=("emu:0", "emu:1"), materialize=False)
    with pytest.raises(ValueError, match="devices: expected two devices"):
        alexnet(split=2, devices=("emu:0", "emu:1", "emu:2"), materialize=False)
    with pytest.raises(TypeError, match="devices: expected two devices"):
        alexnet(split=2, devices="emu:0", materialize=False)


def test_an_unplaced_graph_still_refuses_mixed_devices(rng):
    """Without place(), a graph moves nothing itself: a layer reading an
    array from another device raises, and nothing is transferred."""
    g = small()
    g["conv1b"].to("emu:1")
    deepconv.reset_transfer_stats()
    x, _ = data(rng)
    with pytest.raises(ValueError, match="arrays are on different devices"):
        g.forward(x)
    assert deepconv.transfer_stats() == {}


def test_model_parallel_closed_form_follows_groups_and_the_classifier():
    """By hand: conv1 (groups=2) reads only its group's input channels, conv2
    (groups=4) reads nothing remote once each device holds its group, and
    the classifier on the first device reads every other device's features
    (forward and backward); the images have no gradient."""
    net = nn.Sequential(nn.Conv2d(4, 8, 1, groups=2, materialize=False),
                        nn.Conv2d(8, 8, 1, groups=4, materialize=False),
                        nn.Flatten(), nn.Linear(8, 3, materialize=False))
    # 4 devices: conv1 sends 2 channels to each of devices 1-3; classifier 6 features x 2
    assert model_parallel_bytes(net, (1, 4, 1, 1), 4) == (3 * 2 + 2 * 6) * 4
    # 2 devices: conv1 sends device 1 its group's 2 channels; classifier 4 features x 2
    assert model_parallel_bytes(net, (1, 4, 1, 1), 2) == (2 + 2 * 4) * 4
    assert model_parallel_bytes(net, (1, 4, 1, 1), 1) == 0
    with pytest.raises(ValueError, match="8 output channels does not split over 3 devices"):
        model_parallel_bytes(net, (1, 4, 1, 1), 3)
    with pytest.raises(ValueError, match="input_shape: expected"):
        model_parallel_bytes(net, (4, 1, 1), 2)
