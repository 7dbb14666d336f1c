"""torchvision's VGG (vgg11/13/16/19, without batch norm) and AlexNet
weights in and out of deepconv's ``vgg("A" | "B" | "D" | "E")`` and
``alexnet_owt()``.

A torchvision state dict names each parameter by its index in the
``features`` and ``classifier`` Sequentials (``features.0.weight``,
``classifier.6.bias``); deepconv names layers as the papers do
(``conv1_1.weight``, ``fc8.bias``). Both store conv weights as
``(K, C, R, S)`` and linear weights as ``(out, in)``, and both flatten
NCHW maps in C, H, W order, so the arrays move over unchanged: only the
names change. Values may be numpy arrays or torch tensors (read through
DLPack, no torch import here); ``.pth`` files are read by
:func:`deepconv.interop.load_weights` (which needs torch).

Inputs: torchvision's models take RGB images scaled to 0..1 and
normalised by mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225);
with deepconv's 0..255 pixels that is mean ``TORCHVISION_MEAN_RGB`` and
std ``TORCHVISION_STD_RGB`` (``deepconv eval --mean torchvision``).

torchvision's AdaptiveAvgPool2d (7x7 for VGG, 6x6 for AlexNet) is the
identity at 224 x 224 inputs, the size its weights were trained at; it
has no parameters, and deepconv's models leave it out (a VGG built for
another ``input_size`` has another fc6 shape, which is an error here).
"""

from __future__ import annotations

import numpy as np

from deepconv.backend import to_numpy
from deepconv.models.vgg import VGG_CONFIGS

__all__ = ["TORCHVISION_ARCHS", "TORCHVISION_MEAN_RGB", "TORCHVISION_STD_RGB", "from_torchvision",
           "guess_torchvision_arch", "load_torchvision", "to_torchvision", "torchvision_names"]

TORCHVISION_MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
TORCHVISION_STD_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)

# torchvision's name -> the deepconv model it fits
TORCHVISION_ARCHS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E", "alexnet": "owt"}

# features indices of AlexNet's convs (conv, ReLU, [pool] ...) and classifier
# indices of its Linear layers (Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear)
_ALEXNET = {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6",
            "conv4": "features.8", "conv5": "features.10", "fc6": "classifier.1",
            "fc7": "classifier.4", "fc8": "classifier.6"}


def _vgg_layers(config) -> dict:
    """deepconv layer -> torchvision module for VGG ``config``: each conv
    takes two features slots (Conv2d, ReLU), each block's pooling one; the
    classifier is Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear."""
    layers, index = {}, 0
    for b, block in enumerate(VGG_CONFIGS[config], start=1):
        for i, (_, kernel) in enumerate(block, start=1):
            if kernel != 3:
                raise ValueError(f"config: torchvision has no VGG with 1x1 convolutions ({config!r})")
            layers[f"conv{b}_{i}"] = f"features.{index}"
            index += 2
        index += 1
    layers.update({"fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6"})
    return layers


def torchvision_names(arch) -> dict:
    """deepconv parameter name -> torchvision key, for ``arch`` (one of
    :data:`TORCHVISION_ARCHS`: "vgg11", "vgg13", "vgg16", "vgg19", "alexnet")."""
    if arch not in TORCHVISION_ARCHS:
        raise ValueError(f"arch: expected one of {sorted(TORCHVISION_ARCHS)}, got {arch!r} "
                         "(batch-norm VGGs are not supported)")
    layers = _ALEXNET if arch == "alexnet" else _vgg_layers(TORCHVISION_ARCHS[arch])
    return {f"{ours}.{p}": f"{theirs}.{p}" for ours, theirs in layers.items()
            for p in ("weight", "bias")}


def guess_torchvision_arch(state_dict) -> str:
    """The architecture whose keys ``state_dict`` has exactly; ValueError
    saying what differs from the nearest one otherwise."""
    keys = set(state_dict)
    if any("running_mean" in k for k in keys):
        raise ValueError("state_dict: a batch-norm model (running_mean keys); deepconv's VGG and "
                         "AlexNet have no batch norm")
    best = None
    for arch in TORCHVISION_ARCHS:
        expected = set(torchvision_names(arch).values())
        if expected == keys:
            return arch
        distance = len(expected ^ keys)
        if best is None or distance < best[0]:
            best = (distance, arch, sorted(expected - keys), sorted(keys - expected))
    _, arch, missing, unexpected = best
    raise ValueError(f"state_dict: not a torchvision VGG / AlexNet state dict; the nearest, {arch}, "
                     f"would also need {missing[:4]} and has no {unexpected[:4]}")


def from_torchvision(state_dict, arch=None) -> dict:
    """A torchvision state dict renamed to deepconv's names (the values
    themselves, not copies). ``arch``: None guesses it from the keys."""
    arch = guess_torchvision_arch(state_dict) if arch is None else arch
    names = torchvision_names(arch)
    theirs = set(names.values())
    extra = sorted(k for k in state_dict if k not in theirs)
    missing = sorted(k for k in theirs if k not in state_dict)
    if extra or missing:
        raise ValueError(f"state_dict: does not fit torchvision's {arch}: "
                         + "; ".join(p for p in (f"missing {missing}" if missing else "",
                                                 f"unexpected {extra}" if extra else "") if p))
    return {ours: state_dict[key] for ours, key in names.items()}


def load_torchvision(model, state_dict, arch=None):
    """Copy a torchvision state dict into ``model`` (``vgg("A" | "B" | "D"
    | "E")`` or ``alexnet_owt()``) in place; returns ``model``. Every name,
    shape and dtype is checked first (ValueError / TypeError naming the
    key), so a state dict that does not fit leaves the model as it was."""
    arch = guess_torchvision_arch(state_dict) if arch is None else arch
    renamed = from_torchvision(state_dict, arch)
    try:
        model.load_state_dict(renamed)
    except (ValueError, TypeError) as exc:
        raise type(exc)(_with_torchvision_keys(str(exc), torchvision_names(arch))) from None
    return model


def _with_torchvision_keys(message, names):
    """A load_state_dict message about one key, with torchvision's key beside ours."""
    for ours, theirs in names.items():
        message = message.replace(f"state_dict[{ours!r}]", f"{ours!r} (torchvision {theirs!r})")
    return message


def to_torchvision(model, arch) -> dict:
    """``model``'s parameters under torchvision's keys for ``arch``, as host
    (numpy) copies: ``{k: torch.from_numpy(v) for k, v in ...}`` is a state
    dict torchvision's model loads (``load_state_dict(..., strict=True)``)."""
    names = torchvision_names(arch)
    own = dict(model.named_parameters())
    if set(own) != set(names):
        raise ValueError(f"model: its parameters do not match torchvision's {arch}: missing "
                         f"{sorted(set(names) - set(own))[:4]}, unexpected "
                         f"{sorted(set(own) - set(names))[:4]}")
    return {names[n]: np.array(to_numpy(a)) for n, a in own.items()}
