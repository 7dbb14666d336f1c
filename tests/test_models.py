"""deepconv.models: parameter counts and shapes of the papers' networks
(symbolic, nothing allocated), initialisation, and small variants run
forward and backward on the emulator."""

import numpy as np
import pytest

import deepconv
from deepconv import models, nn

# VGG (Simonyan & Zisserman 2015) Table 1 nets and AlexNet, 1000 classes.
PARAMETER_COUNTS = {
    "A": 132_863_336,
    "A-LRN": 132_863_336,  # LRN has no parameters
    "B": 133_047_848,
    "C": 133_638_952,
    "D": 138_357_544,
    "E": 143_667_240,
}
ALEXNET_PARAMETERS = 60_965_224


@pytest.mark.parametrize("config", PARAMETER_COUNTS)
def test_vgg_parameter_count(config):
    model = models.vgg(config, materialize=False)
    assert nn.count_parameters(model) == PARAMETER_COUNTS[config]


@pytest.mark.parametrize("split", [1, 2])
def test_alexnet_parameter_count(split):
    model = models.alexnet(split=split, materialize=False)
    assert nn.count_parameters(model) == ALEXNET_PARAMETERS


def prefix_shapes(model, input_shape):
    """Output shape after each named layer of a Sequential."""
    shapes, shape = {}, input_shape
    for name, layer in model.children():
        shape = layer.output_shape(shape)
        shapes[name] = shape
    return shapes


@pytest.mark.parametrize("config", PARAMETER_COUNTS)
def test_vgg_shapes_224(config):
    model = models.vgg(config, materialize=False)
    shapes = prefix_shapes(model, (1, 3, 224, 224))
    assert [shapes[f"pool{b}"] for b in range(1, 6)] == [
        (1, 64, 112, 112), (1, 128, 56, 56), (1, 256, 28, 28), (1, 512, 14, 14), (1, 512, 7, 7)]
    assert shapes["fc6"] == (1, 4096) and shapes["fc8"] == (1, 1000)
    convs = [n for n, layer in model.children() if isinstance(layer, nn.Conv2d)]
    assert len(convs) == {"A": 8, "A-LRN": 8, "B": 10, "C": 13, "D": 13, "E": 16}[config]
    if config == "C":
        assert [model[f"conv{b}_3"].kernel_size for b in (3, 4, 5)] == [(1, 1)] * 3
    assert ("lrn1" in dict(model.children())) == (config == "A-LRN")


def test_vgg_other_input_size_and_classes():
    model = models.vgg("A", num_classes=10, input_size=256, materialize=False)
    assert model["fc6"].in_features == 512 * 8 * 8
    assert model.output_shape((2, 3, 256, 256)) == (2, 10)


def test_alexnet_shapes_227():
    model = models.alexnet(materialize=False)
    shapes = prefix_shapes(model, (1, 3, 227, 227))
    assert shapes["conv1"] == (1, 96, 55, 55)
    assert shapes["pool1"] == (1, 96, 27, 27)
    assert shapes["pool2"] == (1, 256, 13, 13)
    assert shapes["conv4"] == (1, 384, 13, 13)
    assert shapes["pool5"] == (1, 256, 6, 6)
    assert shapes["fc8"] == (1, 1000)
    assert [model[f"conv{i}"].groups for i in range(1, 6)] == [1, 2, 1, 2, 2]
    assert models.alexnet(split=2, materialize=False).output_shape((1, 3, 227, 227)) == (1, 1000)


def test_alexnet_two_columns_are_explicit_groups():
    g = models.alexnet(split=2, materialize=False)
    groups = g.groups()
    assert set(groups) == {"column0", "column1", None, "classifier"}
    assert groups[None] == ["concat2", "concat5", "concat6", "concat7"]
    col0 = sum(nn.count_parameters(g[n]) for n in groups["column0"])
    col1 = sum(nn.count_parameters(g[n]) for n in groups["column1"])
    assert col0 == col1
    assert g.node_inputs("conv3a") == ["concat2"] and g.node_inputs("conv4a") == ["relu3a"]
    assert g.node_inputs("fc6b") == ["concat5"] and g.node_inputs("fc8") == ["concat7"]


def test_vgg_initialisation():
    model = models.vgg_small("A", input_size=32, width=16, seed=3)
    w = np.concatenate([np.ravel(a) for n, a in model.named_parameters() if n.endswith("weight")])
    assert abs(w.std() - 0.1) < 0.005 and abs(w.mean()) < 0.005  # variance 1e-2
    assert all(np.all(a == 0) for n, a in model.named_parameters() if n.endswith("bias"))
    glorot = models.vgg_small("A", input_size=8, width=4, init="glorot")
    limit = np.sqrt(6 / (3 * 9 + 4 * 9))
    w1 = glorot["conv1_1"].params["weight"]
    assert np.abs(w1).max() <= limit and np.abs(w1).max() > 0.8 * limit
    again = models.vgg_small("A", input_size=32, width=16, seed=3)
    for a, b in zip(model.parameters(), again.parameters()):
        np.testing.assert_array_equal(a, b)


def test_alexnet_initialisation():
    model = models.alexnet_small(width=2, fc_width=32)
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    for name, layer in model.children():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            assert np.all(layer.params["bias"] == (1.0 if name in ones else 0.0)), name
    w = model["fc6"].params["weight"]
    assert abs(w.std() - 0.01) < 0.001
    assert model["drop6"].scale_at == "test" and model["drop6"].seed != model["drop7"].seed


def test_init_from_net_a():
    net_a = models.vgg_small("A", input_size=32, width=4, seed=1)
    net_d = models.vgg_small("D", input_size=32, width=4, seed=2)
    fresh = models.vgg_small("D", input_size=32, width=4, seed=2)
    models.init_from(net_d, net_a)
    for name in ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8"):
        for a, d in zip(net_a[name].parameters(), net_d[name].parameters()):
            np.testing.assert_array_equal(a, d)
    for name in ("conv1_2", "conv3_3", "conv5_3"):
        np.testing.assert_array_equal(net_d[name].params["weight"], fresh[name].params["weight"])
    other = models.vgg_small("D", input_size=32, num_classes=7, width=4)
    with pytest.raises(ValueError, match="fc8"):
        models.init_from(other, net_a)


@pytest.mark.parametrize("build, size", [
    pytest.param(lambda: models.vgg_small("C", input_size=8, width=4, fc_width=16), 8,
                 id="vgg_small_C_8"),
    pytest.param(lambda: models.vgg_small("A-LRN", input_size=32, width=2, fc_width=16), 32,
                 id="vgg_small_A-LRN_32"),
    pytest.param(lambda: models.alexnet_small(input_size=8, fc_width=16), 8, id="alexnet_small_8"),
    pytest.param(lambda: models.alexnet_small(input_size=32, fc_width=16, split=2), 32,
                 id="alexnet_small_32_split2"),
])
def test_small_models_train_step(build, size, rng):
    model = build()
    shape = (2, 3, size, size)
    x = deepconv.asarray(rng.standard_normal(shape), dtype="float32")
    labels = np.array([1, 7])
    y = model.forward(x)
    assert y.shape == model.output_shape(shape) == (2, 10)
    xent = nn.SoftmaxCrossEntropy()
    assert np.isfinite(float(xent.forward(y, labels)))
    assert model.backward(xent.backward()) is None  # first conv: input_grad=False
    grads = dict(model.named_gradients())
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    assert all(np.any(g != 0) for name, g in grads.items() if name.endswith("weight")), [
        name for name, g in grads.items() if not np.any(g != 0)]


@pytest.mark.parametrize("build, match", [
    (lambda: models.vgg("F"), "config"),
    (lambda: models.vgg("A", input_size=16, materialize=False), "input_size"),
    (lambda: models.vgg("A", init="he", materialize=False), "init"),
    (lambda: models.vgg("A", num_classes=0, materialize=False), "num_classes"),
    (lambda: models.alexnet(split=3, materialize=False), "split"),
    (lambda: models.alexnet(dropout=1.5, materialize=False), "dropout"),
    (lambda: models.alexnet_small(input_size=0, materialize=False), "input_size"),
])
def test_bad_model_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.slow
def test_vgg_d_full_size_forward_backward():
    model = models.vgg("D", seed=0)
    x = deepconv.asarray(np.random.default_rng(0).standard_normal((1, 3, 224, 224)), dtype="float32")
    xent = nn.SoftmaxCrossEntropy()
    loss = float(xent.forward(model.forward(x), np.array([3])))
    assert np.isfinite(loss)
    model.backward(xent.backward())
    assert all(np.all(np.isfinite(g)) for g in model.gradients())


@pytest.mark.parametrize("build", [
    pytest.param(lambda **kw: models.vgg_small(width=4, fc_width=16, seed=3, **kw), id="vgg_small"),
    pytest.param(lambda **kw: models.alexnet_small(fc_width=16, **kw), id="alexnet_small"),
    pytest.param(lambda **kw: models.alexnet_small(fc_width=16, split=2, **kw),
                 id="alexnet_small_split2"),
])
def test_small_models_take_grey_images(build):
    net = build(input_size=8, in_channels=1)
    first = next(w for name, w in net.named_parameters() if name.endswith("weight"))
    assert first.shape[1] == 1
    x = deepconv.asarray(np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32))
    assert net.forward(x).shape[:2] == (2, 10)
    with pytest.raises(ValueError, match="in_channels"):
        build(input_size=8, in_channels=0)
