"""Classification error of a trained network under the test protocols of
AlexNet and VGG: top-1 / top-5 error with

- ``"center"``: one central crop of the rescaled image;
- ``"10crop"``: AlexNet's ten views, the four corner crops and the centre
  crop and their horizontal flips, softmax averaged over the ten;
- ``"multicrop"``: VGG's 5x5 grid of crops and their flips (50 views);
- ``"dense"``: VGG's dense evaluation (section 3.2): the fully connected
  layers become convolutions (fc6 a convolution covering the last feature
  map of a crop, fc7 / fc8 1x1; :func:`dense_model`), the network is slid
  over the whole rescaled image, the class score map is averaged over
  space, and the softmax of the image and of its mirror are averaged;
- ``"dense+multicrop"``: VGG's Table 5, the mean of the ``"dense"`` and the
  ``"multicrop"`` softmax (the two are complementary: different boundary
  handling of the convolutions).

:data:`VIEWS_PER_SCALE` counts the views each protocol classifies per image
and scale (a dense view is a whole rescaled image).

Images are rescaled isotropically (smaller side = Q) for each scale in
``scales`` and the softmax is averaged over scales too (multi-scale
evaluation: :func:`vgg_scales` gives VGG's Q in {S-32, S, S+32} for a
fixed training scale S and {Smin, (Smin+Smax)/2, Smax} for a jittered one).

Ensembles: wherever a model is expected, a list of models (e.g. several
checkpoints) may be passed; their softmax outputs are averaged, members in
list order, per scale.

All averaging happens in float64 on the host in a fixed order, so results
are repeatable.
"""

from __future__ import annotations

import numbers
import time

import numpy as np

from deepconv.backend import asarray, device as _device, device_of, to_numpy
from deepconv.data.transforms import crop, rescale
from deepconv.nn import Dropout, Flatten, Linear, ReLU, Sequential
from deepconv.nn.layer import check_int
from deepconv.ops import softmax, topk_error

__all__ = ["PROTOCOLS", "VIEWS_PER_SCALE", "dense_model", "evaluate", "grid_crops", "predict",
           "ten_crop", "vgg_scales"]

PROTOCOLS = ("center", "10crop", "multicrop", "dense", "dense+multicrop")
# Views classified per image and scale: crops (each flip counts), or for the
# dense protocols the whole image and its mirror.
VIEWS_PER_SCALE = {"center": 1, "10crop": 10, "multicrop": 50, "dense": 2, "dense+multicrop": 52}
_DENSE = ("dense", "dense+multicrop")  # the protocols that need dense_model()
_PASS_THROUGH = (ReLU, Dropout)  # layers after Flatten that work on maps unchanged


def ten_crop(image, size) -> np.ndarray:
    """AlexNet's ten views of ``image`` (C, H, W): the ``size`` x ``size``
    crops at the top-left, top-right, bottom-left and bottom-right corners
    and the centre, then the same five mirrored left-right; (10, C, size,
    size) float32."""
    image, size = _fits(image, size)
    h, w = image.shape[1:]
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size),
               ((h - size) // 2, (w - size) // 2)]
    views = np.stack([crop(image, t, l, size) for t, l in corners])
    return np.concatenate([views, views[:, :, :, ::-1]]).astype(np.float32)


def grid_crops(image, size, grid=5) -> np.ndarray:
    """VGG's multi-crop views: ``size`` x ``size`` crops on a ``grid`` x
    ``grid`` lattice spanning ``image`` evenly (corners included), then
    their mirrors; (2 * grid^2, C, size, size) float32."""
    image, size = _fits(image, size)
    grid = check_int(grid, "grid")
    h, w = image.shape[1:]
    tops = np.linspace(0, h - size, grid).round().astype(int)
    lefts = np.linspace(0, w - size, grid).round().astype(int)
    views = np.stack([crop(image, int(t), int(l), size) for t in tops for l in lefts])
    return np.concatenate([views, views[:, :, :, ::-1]]).astype(np.float32)


def _center(image, size) -> np.ndarray:
    image, size = _fits(image, size)
    h, w = image.shape[1:]
    return crop(image, (h - size) // 2, (w - size) // 2, size)[None].astype(np.float32)


def _fits(image, size):
    image = np.asarray(image)
    size = check_int(size, "crop_size")
    if image.ndim != 3:
        raise ValueError(f"image: expected (C, H, W), got shape {image.shape}")
    if min(image.shape[1:]) < size:
        raise ValueError(f"image: {image.shape[1]}x{image.shape[2]} is smaller than the "
                         f"{size}x{size} crop (rescale it to at least crop_size first)")
    return image, size


_VIEWS = {"center": _center, "10crop": ten_crop, "multicrop": grid_crops}


def dense_model(model, crop_size, in_channels=3):
    """The fully convolutional network of ``model`` for dense evaluation.

    ``model``: a :class:`~deepconv.nn.Sequential` of feature layers, a
    :class:`~deepconv.nn.Flatten`, then :class:`~deepconv.nn.Linear` layers
    (with ReLU / Dropout between), trained on ``crop_size`` x ``crop_size``
    inputs (VGG, the small variants). The result holds the *same* feature
    layer objects and, for each Linear, its :meth:`~deepconv.nn.Linear.as_conv2d`
    (fc6 with the feature map's h x w, the others 1x1), which shares the
    Linear's weights: nothing is copied, and the two networks stay in step.
    (They also share the feature layers' output buffers: an output of one is
    valid until the other's next forward.) On a ``crop_size`` input it
    gives the model's class scores as a (N, K, 1, 1) map; on a larger one a
    (N, K, h', w') score map.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model: expected a deepconv.nn.Sequential, got {type(model).__name__}")
    crop_size = check_int(crop_size, "crop_size")
    in_channels = check_int(in_channels, "in_channels")
    children = model.children()
    cut = next((i for i, (_, layer) in enumerate(children) if isinstance(layer, Flatten)), None)
    if cut is None:
        raise ValueError("model: expected a Flatten between the feature layers and the classifier")
    features = children[:cut]
    shape = (1, in_channels, crop_size, crop_size)
    for _, layer in features:
        shape = layer.output_shape(shape)
    if len(shape) != 4:
        raise ValueError(f"model: the layers before Flatten give shape {shape}, expected (N, C, H, W)")
    layers, hw = list(features), tuple(shape[2:])
    for name, layer in children[cut + 1:]:
        if isinstance(layer, Linear):
            layers.append((name, layer.as_conv2d(hw)))
            hw = (1, 1)
        elif isinstance(layer, _PASS_THROUGH):
            layers.append((name, layer))
        else:
            raise ValueError(f"model: cannot evaluate layer {name!r} ({type(layer).__name__}) "
                             "densely; expected Linear, ReLU or Dropout after Flatten")
    dense = Sequential(*layers)
    dense.train(model.training)
    return dense


def vgg_scales(train_scale) -> tuple:
    """VGG's test scales Q (section 4.2) for a training scale: an int S
    (single-scale training) gives (S-32, S, S+32); a pair (Smin, Smax)
    (scale jitter) gives (Smin, (Smin+Smax)//2, Smax), e.g. (256, 384, 512)
    for (256, 512)."""
    if isinstance(train_scale, (tuple, list)):
        if len(train_scale) != 2:
            raise ValueError(f"train_scale: expected S or a pair (Smin, Smax), got {train_scale!r}")
        low = check_int(train_scale[0], "train_scale")
        high = check_int(train_scale[1], "train_scale")
        if high <= low:
            raise ValueError(f"train_scale: expected Smin < Smax, got {train_scale!r}")
        return (low, (low + high) // 2, high)
    size = check_int(train_scale, "train_scale", 33)  # S-32 must stay >= 1
    return (size - 32, size, size + 32)


def _members(model) -> list:
    """The networks behind ``model``: itself, or the members of an ensemble
    (a list or tuple of networks), in order."""
    members = list(model) if isinstance(model, (list, tuple)) else [model]
    if not members:
        raise ValueError("model: expected a network or a non-empty list of networks (an ensemble)")
    for i, member in enumerate(members):
        if not (hasattr(member, "forward") and hasattr(member, "parameters")):
            raise TypeError(f"model: expected deepconv.nn networks, got {type(member).__name__}"
                            + (f" at index {i}" if len(members) > 1 else ""))
        if not member.parameters():
            raise ValueError("model: expected a network with parameters (they fix its device)")
    return members


def _check_protocol(protocol):
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")


def _dense_nets(dense, members, protocol, crop_size, in_channels) -> list:
    """One fully convolutional network per member for the dense protocols
    (``dense`` as given, else built), None per member otherwise."""
    if protocol not in _DENSE:
        return [None] * len(members)
    if dense is None:
        return [dense_model(m, crop_size, in_channels=in_channels) for m in members]
    nets = list(dense) if isinstance(dense, (list, tuple)) else [dense]
    if len(nets) != len(members):
        raise ValueError(f"dense: expected one network per model ({len(members)}), got {len(nets)}")
    return nets


def model_input(model, x, dev):
    """``x`` (host images) as ``model``'s input: its parameters' dtype, on ``dev``."""
    dtype = model.parameters()[0].dtype if model.parameters() else np.float32
    return asarray(np.ascontiguousarray(x, dtype=dtype), device=dev)


def _probs(scores, dev) -> np.ndarray:
    """Softmax of host scores (N, K), computed on ``dev``, as float64."""
    return to_numpy(softmax(asarray(np.ascontiguousarray(scores), device=dev))).astype(np.float64)


def _crop_probs(model, images, protocol, crop_size, dev) -> np.ndarray:
    views = [_VIEWS[protocol](image, crop_size) for image in images]
    count = views[0].shape[0]
    logits = to_numpy(model.forward(model_input(model, np.concatenate(views), dev)))
    probs = _probs(logits.reshape(logits.shape[0], -1), dev)
    return probs.reshape(len(images), count, -1).mean(axis=1)


def _dense_probs(dense, image, dev) -> np.ndarray:
    pair = np.stack([image, image[:, :, ::-1]])
    score_map = to_numpy(dense.forward(model_input(dense, pair, dev)))
    scores = score_map.astype(np.float64).mean(axis=(2, 3))  # sum-pooling up to a constant
    return _probs(scores.astype(score_map.dtype), dev).mean(axis=0)


def _predict_one(model, dense, images, protocol, crop_size, device, batch_size) -> np.ndarray:
    """:func:`predict` for one network (``dense``: its dense network or None)."""
    dev = _device(device) if device is not None else device_of(model.parameters()[0])
    nets = [model] + ([dense] if dense is not None else [])
    modes = [net.training for net in nets]
    for net in nets:
        net.eval()
    try:
        if protocol in _DENSE:
            probs = np.stack([_dense_probs(dense, np.asarray(im), dev) for im in images])
            if protocol == "dense":
                return probs
        crops = "multicrop" if protocol == "dense+multicrop" else protocol
        crop_probs = np.concatenate([_crop_probs(model, images[i:i + batch_size], crops, crop_size, dev)
                                     for i in range(0, len(images), batch_size)])
        return crop_probs if protocol == crops else (probs + crop_probs) / 2
    finally:
        for net, mode in zip(nets, modes):
            net.train(mode)


def predict(model, images, protocol="center", crop_size=224, *, dense=None, device=None,
            batch_size=16) -> np.ndarray:
    """Class probabilities (N, K), float64, of ``images`` (a list of (C, H,
    W) arrays, already rescaled and mean-subtracted; sizes may differ) under
    ``protocol`` (see the module).

    ``model``: a network, or a list of networks (an ensemble: the mean of
    the members' probabilities, summed in list order; each member runs on
    its own device unless ``device`` is given). ``dense``: the network from
    :func:`dense_model` (a list, one per member, for an ensemble); built
    here when None. ``batch_size`` images are cropped and run together (the
    dense protocols run one image, with its mirror, at a time). The
    networks are put in evaluation mode meanwhile."""
    members = _members(model)
    _check_protocol(protocol)
    images = list(images)
    if not images:
        raise ValueError("images: expected at least one image")
    batch_size = check_int(batch_size, "batch_size")
    nets = _dense_nets(dense, members, protocol, crop_size, np.asarray(images[0]).shape[0])
    total = None
    for i, (member, net) in enumerate(zip(members, nets)):
        probs = _predict_one(member, net, images, protocol, crop_size, device, batch_size)
        if total is not None and probs.shape != total.shape:
            raise ValueError(f"model: ensemble member {i} gives {probs.shape[1]} classes, "
                             f"member 0 gives {total.shape[1]}")
        total = probs if total is None else total + probs
    return total / len(members)


def evaluate(model, dataset, protocol="center", crop_size=224, scales=(256,), *, preprocess=None,
             k=5, device=None, batch_size=16) -> dict:
    """Top-1 and top-``k`` error of ``model`` (a network, or a list of
    networks: an ensemble, see :func:`predict`) on ``dataset``.

    ``dataset``: ``len()`` and ``dataset[i] -> (image (C, H, W), label)``
    with images of any size (e.g. :class:`~deepconv.data.folder.ImageFolder`
    without a transform). Each image is rescaled isotropically to each Q in
    ``scales`` (each >= ``crop_size``; None: used as it is), then
    ``preprocess(image, None)`` (e.g.
    :class:`~deepconv.data.transforms.SubtractMean`) is applied, then the
    ``protocol`` views are classified (:func:`predict`); the softmax is
    averaged over views and members, then over scales.

    Returns ``{"top1_error", "top{k}_error"`` (k capped at the number of
    classes), ``"images", "protocol", "scales", "views"`` (views per image:
    :data:`VIEWS_PER_SCALE` times the number of scales, per member),
    ``"models"`` (ensemble members), ``"seconds"`` (wall time of the whole
    pass: reading, rescaling and classifying) and ``"images_per_s"}``.
    """
    members = _members(model)
    _check_protocol(protocol)
    crop_size = check_int(crop_size, "crop_size")
    if len(dataset) == 0:
        raise ValueError("dataset: expected at least one image")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    scales = None if scales is None else tuple(check_int(q, "scales") for q in scales)
    if scales == ():
        raise ValueError("scales: expected at least one scale, or None")
    if scales is not None and min(scales) < crop_size:
        raise ValueError(f"scales: expected sizes >= crop_size ({crop_size}), got {scales} (an "
                         f"image rescaled to {min(scales)} has no {crop_size}x{crop_size} crop)")
    if preprocess is not None and not callable(preprocess):
        raise TypeError(f"preprocess: expected a callable or None, got {type(preprocess).__name__}")
    batch_size = check_int(batch_size, "batch_size")
    dev = _device(device) if device is not None else device_of(members[0].parameters()[0])
    started = time.perf_counter()
    in_channels = np.asarray(dataset[0][0]).shape[0] if protocol in _DENSE else None
    dense = _dense_nets(None, members, protocol, crop_size, in_channels)
    total, labels = None, []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        labels += [int(label) for _, label in items]
        probs = 0.0
        for q in scales or (None,):
            views = [_prepare(image, q, preprocess) for image, _ in items]
            probs = probs + predict(members, views, protocol, crop_size, dense=dense,
                                    device=device, batch_size=batch_size)
        probs = probs / len(scales or (None,))
        total = probs if total is None else np.concatenate([total, probs])
    classes = total.shape[1]
    scores = asarray(np.ascontiguousarray(total), device=dev)
    y = asarray(np.asarray(labels, dtype=np.int64), device=dev)
    kk = min(k, classes)
    result = {"top1_error": topk_error(scores, y, 1), f"top{k}_error": topk_error(scores, y, kk),
              "images": len(labels), "protocol": protocol, "scales": scales,
              "views": VIEWS_PER_SCALE[protocol] * len(scales or (None,)), "models": len(members)}
    seconds = time.perf_counter() - started
    return dict(result, seconds=seconds, images_per_s=len(labels) / seconds)


def _prepare(image, q, preprocess):
    image = np.asarray(image, dtype=np.float32)
    if q is not None:
        image = rescale(image, q)
    if preprocess is not None:
        image = preprocess(image, None)
    return image
