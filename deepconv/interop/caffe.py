"""Caffe ``.caffemodel`` weights into deepconv's ``vgg(...)`` and
``alexnet()``, by layer name.

A ``.caffemodel`` is a serialized ``caffe.NetParameter``. This reads the
few fields weights need (field numbers of Caffe's ``caffe.proto``) with the
hand-written decoder of :mod:`~deepconv.interop.protowire`::

    NetParameter      name = 1; layer = 100 (LayerParameter);
                      layers = 2 (V1LayerParameter, the legacy format the VGG
                      authors' VGG_ILSVRC_16/19_layers.caffemodel use)
    LayerParameter    name = 1; type = 2 (a string); blobs = 7
    V1LayerParameter  name = 4; type = 5 (an enum); blobs = 6;
                      layer = 1 (V0, older still: refused, upgrade it with
                      Caffe's upgrade_net_proto_binary)
    BlobProto         shape = 7 (BlobShape: dim = 1, int64); data = 5 (float);
                      double_data = 8; legacy 4-D num = 1, channels = 2,
                      height = 3, width = 4

A layer's blobs are its weights then its bias, in the layouts deepconv
uses: convolution ``(K, C/groups, R, S)``, inner product ``(out, in)`` (a
legacy blob stores it as ``(1, 1, out, in)`` and a bias as ``(1, 1, 1,
K)``: dimensions of 1 are dropped to match), and an inner product flattens
its input in C, H, W order as deepconv's Flatten. Caffe's layer names are
deepconv's: ``conv1_1`` ... ``fc8`` (VGG), ``conv1`` ... ``fc8`` (AlexNet;
``alexnet(split=1)``, whose grouped conv2 / conv4 / conv5 are Caffe's
``group: 2``).

Inputs. Caffe's reference models read **BGR** images (OpenCV's order) with
pixels in 0..255 and the training set's mean subtracted: per channel for
VGG (B, G, R = 103.939, 116.779, 123.68), a mean *image* for
``bvlc_alexnet`` (its per-channel average, about 104, 117, 123, is the
usual stand-in). deepconv's pipeline produces RGB, so by default
(``rgb=True``) the first convolution's input channels are reversed on load:
the model then takes RGB images, and ``deepconv eval --mean imagenet``
(R, G, B = 123.68, 116.779, 103.939) is VGG's preprocessing. ``rgb=False``
keeps Caffe's BGR filters.

``bvlc_alexnet`` normalises with Caffe's LRN (k = 1, alpha divided by the
window size), deepconv's ``alexnet()`` with the paper's (k = 2, alpha as
given): call :func:`use_caffe_lrn` after loading to match Caffe.
"""

from __future__ import annotations

import math
import os

import numpy as np

from deepconv.backend import to_numpy
from deepconv.interop.protowire import (FIXED32, FIXED64, LENGTH, VARINT, WireError, fields,
                                       length_field, read_varint, varint, varint_field)

__all__ = ["load_caffe", "read_caffemodel", "save_caffemodel", "use_caffe_lrn"]

_NET_NAME, _NET_LAYERS_V1, _NET_LAYER = 1, 2, 100
_LAYER_NAME, _LAYER_TYPE, _LAYER_BLOBS = 1, 2, 7
_V1_V0LAYER, _V1_NAME, _V1_TYPE, _V1_BLOBS = 1, 4, 5, 6
_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH = 1, 2, 3, 4
_BLOB_DATA, _BLOB_SHAPE, _BLOB_DOUBLE_DATA = 5, 7, 8
_SHAPE_DIM = 1
_V1_CONVOLUTION, _V1_INNER_PRODUCT = 4, 14  # V1LayerParameter.LayerType


def read_caffemodel(path) -> dict:
    """``{layer name: [blob, ...]}`` of the layers that have blobs, in file
    order; each blob a float32 (or float64) numpy array in its stored
    shape. ValueError naming the file (and the layer) if it is not a
    readable caffemodel."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = memoryview(f.read())
    try:
        return _read_net(data)
    except WireError as exc:
        raise ValueError(f"{path}: not a Caffe NetParameter (.caffemodel): {exc}") from None
    except _LayerError as exc:
        raise ValueError(f"{path}: {exc}") from None


class _LayerError(Exception):
    pass


def _read_net(data) -> dict:
    layers = {}
    for number, wire, value in fields(data):
        if number in (_NET_LAYER, _NET_LAYERS_V1) and wire == LENGTH:
            name, blobs = _read_layer(value, legacy=number == _NET_LAYERS_V1)
            if not blobs:
                continue
            if name in layers:
                raise _LayerError(f"two layers named {name!r} hold weights")
            layers[name] = blobs
    return layers


def _read_layer(buf, legacy):
    name_field, blobs_field = (_V1_NAME, _V1_BLOBS) if legacy else (_LAYER_NAME, _LAYER_BLOBS)
    name, raw_blobs = None, []
    for number, wire, value in fields(buf):
        if legacy and number == _V1_V0LAYER and wire == LENGTH:
            raise _LayerError("a V0 layer (Caffe before 2014); upgrade the file with Caffe's "
                              "upgrade_net_proto_binary first")
        if number == name_field and wire == LENGTH:
            name = bytes(value).decode("utf-8", errors="replace")
        elif number == blobs_field and wire == LENGTH:
            raw_blobs.append(value)
    if name is None:
        name = f"<unnamed layer with {len(raw_blobs)} blobs>"
    blobs = []
    for i, raw in enumerate(raw_blobs):
        try:
            blobs.append(_read_blob(raw))
        except (WireError, ValueError) as exc:
            raise _LayerError(f"layer {name!r}, blob {i}: {exc}") from None
    return name, blobs


def _read_blob(buf) -> np.ndarray:
    legacy = {}
    dims, floats, doubles = None, [], []
    for number, wire, value in fields(buf):
        if number in (_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH) and wire == VARINT:
            legacy[number] = value
        elif number == _BLOB_SHAPE and wire == LENGTH:
            dims = _read_shape(value)
        elif number == _BLOB_DATA:
            floats.append(_numbers(value, wire, FIXED32, "<f4"))
        elif number == _BLOB_DOUBLE_DATA:
            doubles.append(_numbers(value, wire, FIXED64, "<f8"))
    if dims is None:  # the deprecated 4-D shape; absent fields are 0 as in Caffe
        dims = [legacy.get(k, 0) for k in (_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH)]
    parts = doubles if doubles else floats
    flat = np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else np.zeros(0, "<f4"))
    count = math.prod(dims) if dims else 0  # Python ints: a corrupt shape cannot wrap
    if flat.size != count:
        raise ValueError(f"shape {tuple(dims)} needs {count} values, the blob holds {flat.size}")
    return flat.astype(flat.dtype.newbyteorder("="), copy=True).reshape(dims)


def _read_shape(buf) -> list:
    dims = []
    for number, wire, value in fields(buf):
        if number != _SHAPE_DIM:
            continue
        if wire == VARINT:
            dims.append(value)
        elif wire == LENGTH:  # packed
            pos = 0
            while pos < len(value):
                dim, pos = read_varint(value, pos)
                dims.append(dim)
    if any(d >= 1 << 63 for d in dims):
        raise ValueError(f"negative dimension in shape {dims}")
    return dims


def _numbers(value, wire, fixed_wire, dtype):
    """A packed run (LENGTH) or a single fixed-width value of ``dtype``."""
    size = np.dtype(dtype).itemsize
    if wire not in (LENGTH, fixed_wire) or len(value) % size:
        raise ValueError(f"malformed {np.dtype(dtype).name} data (wire type {wire}, "
                         f"{len(value)} bytes)")
    return np.frombuffer(value, dtype=dtype)


def load_caffe(model, path, rgb=True):
    """Copy the weights of the ``.caffemodel`` at ``path`` into ``model``
    (``vgg(...)``, ``alexnet()`` or any deepconv model whose layer names
    are the Caffe net's) in place, by layer name; returns ``model``.

    Every layer of the model with parameters must be in the file, with
    weights and a bias of the parameters' sizes (layers of the file the
    model lacks, e.g. a loss, are ignored). ``rgb``: reverse the first
    convolution's input channels so that the model takes RGB images (see
    the module docstring). Nothing changes unless everything fits."""
    blobs = read_caffemodel(path)
    state = {}
    own = model.named_parameters()
    for name, arr in own:
        layer, _, kind = name.rpartition(".")
        if kind not in ("weight", "bias") or not layer:
            raise ValueError(f"model: parameter {name!r} is not a layer's weight or bias")
        if layer not in blobs:
            raise ValueError(f"{path}: no layer named {layer!r} with weights (layers with "
                             f"weights: {', '.join(blobs)})")
        index = 0 if kind == "weight" else 1
        if index >= len(blobs[layer]):
            raise ValueError(f"{path}: layer {layer!r} has {len(blobs[layer])} blob(s), no {kind}")
        blob = blobs[layer][index]
        if _squeezed(blob.shape) != _squeezed(arr.shape):
            raise ValueError(f"{path}: layer {layer!r} {kind} has shape {tuple(blob.shape)}, the "
                             f"model's {name} {tuple(arr.shape)}")
        state[name] = blob.reshape(arr.shape)
    if rgb:
        first = next((n for n, a in own if n.endswith(".weight") and a.ndim == 4), None)
        if first is None or state[first].shape[1] != 3:
            raise ValueError("rgb: the model's first convolution does not read 3 channels; "
                             "pass rgb=False")
        state[first] = state[first][:, ::-1]  # BGR filters -> RGB filters
    model.load_state_dict(state)
    return model


def save_caffemodel(model, path, rgb=True, legacy=False, name="deepconv"):
    """Write ``model``'s weights as a ``.caffemodel`` (atomically): one
    layer per deepconv layer with parameters, named as in deepconv, its
    blobs the weights and the bias (float32 ``data``; float64 models write
    ``double_data``). ``rgb``: the model reads RGB, so the first
    convolution's filters are reversed to Caffe's BGR (what
    :func:`load_caffe` undoes). ``legacy``: the V1 ``layers`` format with
    4-D num / channels / height / width blobs, as the VGG authors' files;
    else ``layer`` with ``shape``. Only weights: Caffe also needs the
    net's ``.prototxt``."""
    from deepconv.checkpoint import atomic_write

    layers = {}
    for pname, arr in model.named_parameters():
        layer, _, kind = pname.rpartition(".")
        layers.setdefault(layer, {})[kind] = np.array(to_numpy(arr))
    first = next(iter(layers), None)
    if rgb and first is not None:
        weight = layers[first]["weight"]
        if weight.ndim != 4 or weight.shape[1] != 3:
            raise ValueError("rgb: the model's first layer does not read 3 channels; pass rgb=False")
        layers[first]["weight"] = weight[:, ::-1]
    out = [length_field(_NET_NAME, name.encode())]
    for layer, blobs in layers.items():
        if set(blobs) - {"weight", "bias"}:
            raise ValueError(f"model: layer {layer!r} has parameters other than weight and bias")
        conv = blobs["weight"].ndim == 4
        body = [_blob(blobs[kind], legacy) for kind in ("weight", "bias") if kind in blobs]
        if legacy:
            head = [length_field(_V1_NAME, layer.encode()),
                    varint_field(_V1_TYPE, _V1_CONVOLUTION if conv else _V1_INNER_PRODUCT)]
            out.append(length_field(_NET_LAYERS_V1, b"".join(
                head + [length_field(_V1_BLOBS, b) for b in body])))
        else:
            head = [length_field(_LAYER_NAME, layer.encode()),
                    length_field(_LAYER_TYPE, b"Convolution" if conv else b"InnerProduct")]
            out.append(length_field(_NET_LAYER, b"".join(
                head + [length_field(_LAYER_BLOBS, b) for b in body])))
    def write(f):
        for part in out:
            f.write(part)

    atomic_write(path, write)
    return path


def _blob(value, legacy) -> bytes:
    if legacy:
        if value.ndim > 4:
            raise ValueError(f"legacy: a blob of {value.ndim} dimensions has no 4-D form")
        dims = (1,) * (4 - value.ndim) + value.shape
        parts = [varint_field(field, d) for field, d in
                 zip((_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH), dims)]
    else:
        packed = b"".join(varint(d) for d in value.shape)
        parts = [length_field(_BLOB_SHAPE, length_field(_SHAPE_DIM, packed))]
    double = value.dtype == np.float64
    data = np.ascontiguousarray(value, dtype="<f8" if double else "<f4")
    parts.append(length_field(_BLOB_DOUBLE_DATA if double else _BLOB_DATA, data.tobytes()))
    return b"".join(parts)


def _squeezed(shape):
    return tuple(d for d in shape if d != 1)


def use_caffe_lrn(model):
    """Make every LRN layer of ``model`` normalise as Caffe's LRN layer
    (k = 1, alpha divided by the window size; size, alpha and beta kept):
    bvlc_alexnet's. Returns ``model``."""
    from deepconv.nn import LRN

    leaves = model.named_layers() if hasattr(model, "named_layers") else [("", model)]
    for _, layer in leaves:
        if isinstance(layer, LRN):
            layer.k = 1.0
            layer.alpha_convention = "per_size"
    return model
