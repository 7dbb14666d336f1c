"""Weights from torchvision and Caffe: torch models built here with
torchvision's layer structure and names (torchvision itself is not
needed), and .caffemodel files written here through the protobuf package,
loaded into deepconv's models; the logits must agree.

Small inputs where the architecture allows: a VGG built for 32x32 images
has fc6 of 512 inputs, and its torch twin then reads pool5 directly (at
224x224, torchvision's AdaptiveAvgPool2d(7, 7) is the identity; the
AlexNet test runs at 224 with torchvision's AdaptiveAvgPool2d(6, 6) in
place, which checks that claim)."""

import numpy as np
import pytest
import torch
from torch import nn

import deepconv
from deepconv.interop import (from_torchvision, load_caffe, load_torchvision, load_weights,
                              read_caffemodel, save_caffemodel, to_torchvision, torchvision_names,
                              use_caffe_lrn)
from deepconv.models import alexnet_owt, alexnet_small, count_parameters, vgg, vgg_small

TORCH_VGG = {  # torchvision's cfgs: conv widths, "M" for a max pooling
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512,
          512, 512, "M"],
}
ARCH = {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"}
CLASSES = 10


class TorchVGG(nn.Module):
    """torchvision.models.VGG's modules and names; ``pooled`` is the side
    of pool5's maps (7 at 224; at 224 ``avgpool`` is torchvision's own);
    ``narrow`` divides every width (8: vgg_small's default)."""

    def __init__(self, cfg, pooled=7, avgpool=True, narrow=1):
        super().__init__()
        layers, channels = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, v // narrow, kernel_size=3, padding=1),
                           nn.ReLU(inplace=True)]
                channels = v // narrow
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7)) if avgpool else nn.Identity()
        fc = 4096 // narrow // 8 if narrow > 1 else 4096  # vgg_small: fc_width 64 for width 8
        self.classifier = nn.Sequential(
            nn.Linear(channels * pooled * pooled, fc), nn.ReLU(True), nn.Dropout(),
            nn.Linear(fc, fc), nn.ReLU(True), nn.Dropout(), nn.Linear(fc, CLASSES))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class TorchAlexNet(nn.Module):
    """torchvision.models.AlexNet's modules and names."""

    def __init__(self, num_classes=CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _torch_logits(model, x):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def _deepconv_logits(model, x):
    return np.array(model.eval().forward(deepconv.asarray(x)))


def _check(ours, theirs, dtype):
    scale = np.abs(theirs).max()
    assert scale > 0
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * scale)


def _images(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- torchvision ------------------------------------------------------------------------


@pytest.mark.parametrize("config, dtype", [("A", np.float64), ("A", np.float32),
                                           ("B", np.float32), ("D", np.float32),
                                           ("E", np.float32)])
def test_torchvision_vgg_weights_give_torchs_logits(config, dtype):
    torch.manual_seed(1)
    theirs = TorchVGG(TORCH_VGG[config], pooled=1, avgpool=False).to(torch.float64
                                                                      if dtype == np.float64
                                                                      else torch.float32)
    ours = vgg(config, num_classes=CLASSES, input_size=32, dtype=dtype, materialize=False)
    ours.reset_parameters(0)
    load_torchvision(ours, theirs.state_dict())  # torch tensors, read without a copy
    x = _images((2, 3, 32, 32), dtype)
    _check(_deepconv_logits(ours, x), _torch_logits(theirs, x), dtype)
    # and back out: a torch model of torchvision's structure loads them strictly
    back = TorchVGG(TORCH_VGG[config], pooled=1, avgpool=False)
    exported = to_torchvision(ours, ARCH[config])
    back.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
    for key, tensor in theirs.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key].numpy(), tensor.numpy(), key)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_torchvision_alexnet_weights_give_torchs_logits_at_224(dtype):
    torch.manual_seed(2)
    theirs = TorchAlexNet(num_classes=1000).to(torch.float64 if dtype == np.float64
                                               else torch.float32)
    ours = alexnet_owt(dtype=dtype, materialize=False)
    assert count_parameters(ours) == 61_100_840 == sum(p.numel() for p in theirs.parameters())
    ours.reset_parameters(0)
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}  # numpy: no torch needed
    load_torchvision(ours, state, "alexnet")
    x = _images((1, 3, 224, 224), dtype)
    _check(_deepconv_logits(ours, x), _torch_logits(theirs, x), dtype)
    assert set(to_torchvision(ours, "alexnet")) == set(state)


def test_torchvision_names_follow_torchvisions_indices():
    names = torchvision_names("vgg16")
    assert names["conv1_1.weight"] == "features.0.weight"
    assert names["conv5_3.bias"] == "features.28.bias"
    assert names["fc6.weight"] == "classifier.0.weight" and names["fc8.bias"] == "classifier.6.bias"
    assert torchvision_names("vgg19")["conv5_4.weight"] == "features.34.weight"
    assert torchvision_names("alexnet")["conv5.weight"] == "features.10.weight"
    assert torchvision_names("alexnet")["fc6.weight"] == "classifier.1.weight"
    with pytest.raises(ValueError, match="arch: expected one of"):
        torchvision_names("vgg16_bn")


def test_a_torchvision_state_dict_that_does_not_fit_changes_nothing():
    ours = vgg("A", num_classes=CLASSES, input_size=32)
    before = [np.array(a) for a in ours.parameters()]
    full = {k: v.numpy() for k, v in TorchVGG(TORCH_VGG["A"]).state_dict().items()}  # 224's fc6
    with pytest.raises(ValueError, match=r"'fc6.weight' \(torchvision 'classifier.0.weight'\): "
                                         r"expected shape \(4096, 512\), got \(4096, 25088\)"):
        load_torchvision(ours, full)
    with pytest.raises(ValueError, match="batch-norm"):
        load_torchvision(ours, {**full, "features.1.running_mean": np.zeros(64)})
    with pytest.raises(ValueError, match=r"nearest, vgg11.*'classifier.6.bias'"):
        load_torchvision(ours, {k: v for k, v in full.items() if k != "classifier.6.bias"})
    with pytest.raises(ValueError, match=r"vgg13: missing"):
        from_torchvision(full, "vgg13")
    for b, a in zip(before, ours.parameters()):
        np.testing.assert_array_equal(a, b)


# --- Caffe ------------------------------------------------------------------------------


def _caffe_messages():
    """NetParameter and friends from a subset of caffe.proto (the field
    numbers are Caffe's), built with the protobuf package at run time."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe",
                                               syntax="proto2")

    def message(name, *fields):
        m = proto.message_type.add(name=name)
        for fname, number, ftype, repeated, type_name, packed in fields:
            f = m.field.add(name=fname, number=number, type=ftype,
                            label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if type_name:
                f.type_name = f".caffe.{type_name}"
            if packed:
                f.options.packed = True

    message("BlobShape", ("dim", 1, F.TYPE_INT64, True, None, True))
    message("BlobProto", ("shape", 7, F.TYPE_MESSAGE, False, "BlobShape", False),
            ("data", 5, F.TYPE_FLOAT, True, None, True),
            ("double_data", 8, F.TYPE_DOUBLE, True, None, True),
            ("num", 1, F.TYPE_INT32, False, None, False),
            ("channels", 2, F.TYPE_INT32, False, None, False),
            ("height", 3, F.TYPE_INT32, False, None, False),
            ("width", 4, F.TYPE_INT32, False, None, False))
    message("LayerParameter", ("name", 1, F.TYPE_STRING, False, None, False),
            ("type", 2, F.TYPE_STRING, False, None, False),
            ("bottom", 3, F.TYPE_STRING, True, None, False),
            ("top", 4, F.TYPE_STRING, True, None, False),
            ("blobs", 7, F.TYPE_MESSAGE, True, "BlobProto", False))
    message("V1LayerParameter", ("bottom", 2, F.TYPE_STRING, True, None, False),
            ("top", 3, F.TYPE_STRING, True, None, False),
            ("name", 4, F.TYPE_STRING, False, None, False),
            ("type", 5, F.TYPE_INT32, False, None, False),  # an enum in Caffe: same wire
            ("blobs", 6, F.TYPE_MESSAGE, True, "BlobProto", False))
    message("NetParameter", ("name", 1, F.TYPE_STRING, False, None, False),
            ("layers", 2, F.TYPE_MESSAGE, True, "V1LayerParameter", False),
            ("input", 3, F.TYPE_STRING, True, None, False),
            ("layer", 100, F.TYPE_MESSAGE, True, "LayerParameter", False))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClassesForFiles(["caffe_subset.proto"], pool)


_V1_CONVOLUTION, _V1_INNER_PRODUCT, _V1_RELU = 4, 14, 18


def _write_caffemodel(path, model, legacy, double):
    """``model``'s weights as Caffe would hold them: BGR first filters,
    legacy (V1 ``layers``, num/channels/height/width) or current (``layer``,
    ``shape``) layout; also a weightless layer, which loading ignores."""
    classes = _caffe_messages()
    net = classes["caffe.NetParameter"](name="test_net", input=["data"])
    params = model.named_parameters()
    first = params[0][0]
    layers = {}
    for name, arr in params:
        value = np.array(arr)
        if name == first:
            value = value[:, ::-1]  # Caffe's filters read BGR
        layers.setdefault(name.rpartition(".")[0], []).append(value)
    for layer_name, (weight, bias) in layers.items():
        if legacy:
            layer = net.layers.add(name=layer_name, bottom=["x"], top=[layer_name],
                                   type=_V1_CONVOLUTION if weight.ndim == 4 else _V1_INNER_PRODUCT)
            net.layers.add(name=f"relu_{layer_name}", type=_V1_RELU)
        else:
            layer = net.layer.add(name=layer_name, bottom=["x"], top=[layer_name],
                                  type="Convolution" if weight.ndim == 4 else "InnerProduct")
            net.layer.add(name=f"relu_{layer_name}", type="ReLU")
        for blob_value in (weight, bias):
            blob = layer.blobs.add()
            if legacy:  # 4-D: fc weights (1, 1, out, in), biases (1, 1, 1, K)
                dims = (1,) * (4 - blob_value.ndim) + blob_value.shape
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(blob_value.shape)
            flat = np.ascontiguousarray(blob_value).ravel().tolist()
            (blob.double_data if double else blob.data).extend(flat)
    path.write_bytes(net.SerializeToString())
    return path


def _small_vgg(dtype=np.float32, seed=0):
    """vgg("A")'s layers and names at 1/8 of the width (Caffe's protobuf
    writer is slow: a full VGG's 30 M weights take seconds)."""
    return vgg_small("A", num_classes=CLASSES, dtype=dtype, seed=seed)


@pytest.mark.parametrize("legacy, dtype, full", [(True, np.float32, True),
                                                 (False, np.float64, False)],
                         ids=["vgg_V1_layers_float32", "small_vgg_layer_shape_float64"])
def test_caffemodel_into_vgg(tmp_path, legacy, dtype, full):
    def build(seed):
        if full:
            return vgg("A", num_classes=CLASSES, input_size=32, dtype=dtype, seed=seed)
        return _small_vgg(dtype, seed)

    source = build(3)
    path = _write_caffemodel(tmp_path / "vgg.caffemodel", source, legacy,
                             double=dtype == np.float64)
    blobs = read_caffemodel(path)
    assert list(blobs)[:2] == ["conv1_1", "conv2_1"] and "relu_conv1_1" not in blobs
    fc6 = source["fc6"].params["weight"].shape
    assert blobs["fc6"][0].shape == ((1, 1) + fc6 if legacy else fc6)
    loaded = load_caffe(build(4), path)
    x = _images((2, 3, 32, 32), dtype)
    _check(_deepconv_logits(loaded, x), _deepconv_logits(source, x), dtype)
    bgr = load_caffe(build(5), path, rgb=False)
    _check(_deepconv_logits(bgr, np.ascontiguousarray(x[:, ::-1])),
           _deepconv_logits(source, x), dtype)


def test_caffemodel_into_alexnet_with_groups(tmp_path):
    # alexnet_small: alexnet()'s layer names, groups and LRNs, narrower
    source = alexnet_small(num_classes=CLASSES, width=2, dtype=np.float64, seed=5)
    path = _write_caffemodel(tmp_path / "alexnet.caffemodel", source, legacy=False, double=True)
    assert read_caffemodel(path)["conv2"][0].shape == (32, 6, 5, 5)  # group: 2
    loaded = load_caffe(alexnet_small(num_classes=CLASSES, width=2, dtype=np.float64, seed=6),
                        path)
    x = _images((2, 3, 32, 32), np.float64)
    _check(_deepconv_logits(loaded, x), _deepconv_logits(source, x), np.float64)
    use_caffe_lrn(loaded)
    assert loaded["lrn1"].k == 1.0 and loaded["lrn2"].alpha_convention == "per_size"


def test_bad_caffemodels_are_value_errors_naming_the_file(tmp_path):
    path = _write_caffemodel(tmp_path / "vgg.caffemodel", _small_vgg(seed=3), legacy=False,
                             double=False)
    raw = path.read_bytes()
    target = _small_vgg(seed=4)
    before = [np.array(a) for a in target.parameters()]
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(raw[:-100])
    with pytest.raises(ValueError, match=f"{cut}: not a Caffe NetParameter"):
        load_caffe(target, cut)
    with pytest.raises(ValueError, match=r"no layer named 'conv1_2' with weights"):
        load_caffe(vgg_small("B", num_classes=CLASSES), path)
    wrong = _write_caffemodel(tmp_path / "wide.caffemodel",
                              vgg_small("A", num_classes=CLASSES + 1), False, False)
    with pytest.raises(ValueError, match=r"layer 'fc8' weight has shape \(11, 64\), the model's "
                                         r"fc8.weight \(10, 64\)"):
        load_caffe(target, wrong)
    net = _caffe_messages()["caffe.NetParameter"]()
    blob = net.layer.add(name="conv1_1").blobs.add()
    blob.shape.dim.extend([2, 2])
    blob.data.extend([1.0, 2.0, 3.0])
    short = tmp_path / "short.caffemodel"
    short.write_bytes(net.SerializeToString())
    with pytest.raises(ValueError, match=r"layer 'conv1_1', blob 0: shape \(2, 2\) needs 4 values, "
                                         r"the blob holds 3"):
        load_caffe(target, short)
    v0 = tmp_path / "v0.caffemodel"
    v0.write_bytes(bytes([0x12, 0x04, 0x0A, 0x02, 0x0A, 0x00]))  # layers { layer { name: "" } }
    with pytest.raises(ValueError, match="V0 layer"):
        load_caffe(target, v0)
    for b, a in zip(before, target.parameters()):
        np.testing.assert_array_equal(a, b)


# --- by file name -------------------------------------------------------------------------


def test_load_weights_reads_each_format(tmp_path):
    from safetensors.numpy import save_file

    from deepconv.checkpoint import save_checkpoint

    torch.manual_seed(3)
    theirs = TorchVGG(TORCH_VGG["A"], pooled=1, avgpool=False, narrow=8)
    x = _images((1, 3, 32, 32), np.float32)
    expected = _torch_logits(theirs, x)

    def fresh():
        return _small_vgg(seed=9)

    pth = tmp_path / "vgg11.pth"
    torch.save(theirs.state_dict(), pth)
    _check(_deepconv_logits(load_weights(fresh(), pth), x), expected, np.float32)
    tv = tmp_path / "vgg11.safetensors"
    save_file({k: v.numpy() for k, v in theirs.state_dict().items()}, str(tv))
    _check(_deepconv_logits(load_weights(fresh(), tv), x), expected, np.float32)
    model = load_weights(fresh(), tv)
    own = tmp_path / "own.safetensors"  # deepconv's names
    save_file({k: np.array(v) for k, v in model.state_dict().items()}, str(own))
    _check(_deepconv_logits(load_weights(fresh(), own), x), expected, np.float32)
    ckpt = tmp_path / "checkpoint.safetensors"
    save_checkpoint(ckpt, model)
    _check(_deepconv_logits(load_weights(fresh(), ckpt), x), expected, np.float32)
    caffe = _write_caffemodel(tmp_path / "vgg.caffemodel", model, legacy=True, double=False)
    _check(_deepconv_logits(load_weights(fresh(), caffe), x), expected, np.float32)
    with pytest.raises(ValueError, match=r"unknown weight file type '.h5'"):
        load_weights(fresh(), tmp_path / "w.h5")
    with pytest.raises(ValueError, match=r"torchvision 'classifier.6.weight'.*expected shape"):
        load_weights(vgg_small("A", num_classes=3), pth)


@pytest.mark.parametrize("legacy", [False, True], ids=["layer", "V1_layers"])
def test_save_caffemodel_is_what_protobuf_reads(tmp_path, legacy):
    model = alexnet_small(num_classes=CLASSES, width=1, seed=7)
    path = save_caffemodel(model, tmp_path / "net.caffemodel", legacy=legacy)
    net = _caffe_messages()["caffe.NetParameter"].FromString(path.read_bytes())
    layers = net.layers if legacy else net.layer
    assert [layer.name for layer in layers] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6",
                                                "fc7", "fc8"]
    conv2 = layers[1]
    weight = model["conv2"].params["weight"]
    if legacy:
        assert (conv2.blobs[0].num, conv2.blobs[0].channels) == weight.shape[:2]
        assert conv2.type == _V1_CONVOLUTION and layers[5].blobs[1].width == 64
    else:
        assert list(conv2.blobs[0].shape.dim) == list(weight.shape) and conv2.type == "Convolution"
    np.testing.assert_array_equal(np.array(conv2.blobs[0].data).reshape(weight.shape), weight)
    first = np.array(layers[0].blobs[0].data).reshape(model["conv1"].params["weight"].shape)
    np.testing.assert_array_equal(first, model["conv1"].params["weight"][:, ::-1])  # BGR
    back = load_caffe(alexnet_small(num_classes=CLASSES, width=1, seed=8), path)
    for a, b in zip(model.parameters(), back.parameters()):
        assert a.tobytes() == b.tobytes()


@pytest.mark.slow
def test_torchvision_vgg16_at_224_with_its_adaptive_pooling():
    """Full size: torchvision's own AdaptiveAvgPool2d((7, 7)) in the torch
    model, which at 224 x 224 is the identity deepconv leaves out (the fast
    tests above cover the same loading code at 32 x 32)."""
    torch.manual_seed(4)
    theirs = TorchVGG(TORCH_VGG["D"])
    ours = vgg("D", num_classes=CLASSES, materialize=False)
    ours.reset_parameters(0)
    load_torchvision(ours, theirs.state_dict(), "vgg16")
    x = _images((1, 3, 224, 224), np.float32)
    _check(_deepconv_logits(ours, x), _torch_logits(theirs, x), np.float32)
