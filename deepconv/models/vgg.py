"""VGG networks A, A-LRN, B, C, D, E (Simonyan & Zisserman, 2015, Table 1),
and VGG's initialisation of a deeper net from net A."""

from __future__ import annotations

import numpy as np

from deepconv.backend import backend_for, to_device
from deepconv.nn import Conv2d, Dropout, Flatten, Linear, LRN, MaxPool2d, ReLU, Sequential
from deepconv.nn.layer import check_int, check_real

__all__ = ["VGG_CONFIGS", "vgg", "init_from"]

# Per block, the convolutions as (output channels, kernel size); a 2x2
# stride-2 max pooling closes each block. "C" has 1x1 convolutions as the
# last layer of blocks 3-5, "D" 3x3 there. "A-LRN" is A plus LRN after conv1_1.
_A = [[(64, 3)], [(128, 3)], [(256, 3)] * 2, [(512, 3)] * 2, [(512, 3)] * 2]
_B = [[(64, 3)] * 2, [(128, 3)] * 2, [(256, 3)] * 2, [(512, 3)] * 2, [(512, 3)] * 2]
VGG_CONFIGS = {
    "A": _A,
    "A-LRN": _A,
    "B": _B,
    "C": _B[:2] + [[(c, 3), (c, 3), (c, 1)] for c in (256, 512, 512)],
    "D": _B[:2] + [[(c, 3)] * 3 for c in (256, 512, 512)],
    "E": _B[:2] + [[(c, 3)] * 4 for c in (256, 512, 512)],
}

# The paper: weights from a zero-mean normal with *variance* 1e-2, i.e. a
# standard deviation of 0.1 (Caffe's released VGG definitions use std 0.01;
# we follow the paper's text), biases zero.
VGG_INIT_STD = 0.1
INIT_CHOICES = ("normal", "glorot")


def vgg(config, num_classes=1000, input_size=224, *, init="normal", dropout=0.5, seed=0,
        dtype="float32", device="emu:0", materialize=True):
    """VGG net ``config`` ("A", "A-LRN", "B", "C", "D", "E") as in Table 1.

    3x3 convolutions with padding 1 (1x1 ones in C), ReLU after every
    convolution, five 2x2 / 2 max poolings, then fc6 and fc7 (4096, ReLU,
    dropout ``dropout``) and fc8 (``num_classes``). ``input_size`` (224 in
    the paper) sets fc6's input, 512 x (input_size / 32)^2. Layers are named
    as in the paper's tables (``conv3_2``, ``fc6`` ...).

    ``init``: "normal" (zero-mean, variance 1e-2, zero biases, as the paper
    trained net A) or "glorot" (Glorot & Bengio, which the paper notes works
    without pre-training). ``seed`` seeds the weights and the dropout masks.
    ``materialize=False`` builds the layers without allocating parameters
    (count them with :func:`deepconv.nn.count_parameters`; allocate with
    ``model.reset_parameters(seed)``).
    """
    if config not in VGG_CONFIGS:
        raise ValueError(f"config: expected one of {sorted(VGG_CONFIGS)}, got {config!r}")
    widths = [[c for c, _ in block] for block in VGG_CONFIGS[config]]
    return build_vgg(config, widths, 4096, num_classes, input_size, init=init, dropout=dropout,
                     seed=seed, dtype=dtype, device=device, materialize=materialize)


def build_vgg(config, widths, fc_width, num_classes, input_size, *, init, dropout, seed, dtype,
              device, materialize, in_channels=3):
    """A VGG-shaped Sequential: the kernel sizes and LRN of ``config`` with
    channel ``widths`` per block (as many blocks as given), fc6 / fc7 of
    ``fc_width``, for images of ``in_channels`` channels (RGB: 3)."""
    num_classes = check_int(num_classes, "num_classes")
    input_size = check_int(input_size, "input_size")
    fc_width = check_int(fc_width, "fc_width")
    dropout = check_real(dropout, "dropout", low=0.0, high=1.0, high_open=True)
    seed = check_int(seed, "seed", minimum=0)
    if init not in INIT_CHOICES:
        raise ValueError(f"init: expected one of {INIT_CHOICES}, got {init!r}")
    weight_init = VGG_INIT_STD if init == "normal" else "glorot"
    spatial = input_size
    for _ in widths:
        spatial //= 2
    if spatial < 1:
        raise ValueError(
            f"input_size: {input_size} is too small for {len(widths)} 2x2 poolings "
            f"(at least {2 ** len(widths)})"
        )
    common = dict(weight_init=weight_init, bias_init=0.0, dtype=dtype, device=device,
                  materialize=False)
    layers, channels = [], check_int(in_channels, "in_channels")
    for b, (block, kinds) in enumerate(zip(widths, VGG_CONFIGS[config]), start=1):
        for i, (width, (_, kernel)) in enumerate(zip(block, kinds), start=1):
            first = not layers
            layers.append((f"conv{b}_{i}", Conv2d(channels, width, kernel, padding=kernel // 2,
                                                  input_grad=not first, **common)))
            layers.append((f"relu{b}_{i}", ReLU()))
            if config == "A-LRN" and first:
                layers.append(("lrn1", LRN()))  # AlexNet's constants; the paper gives none
            channels = width
        layers.append((f"pool{b}", MaxPool2d(2, 2)))
    layers.append(("flatten", Flatten()))
    features = channels * spatial * spatial
    for name, width in (("fc6", fc_width), ("fc7", fc_width)):
        layers += [(name, Linear(features, width, **common)), (f"relu{name[2:]}", ReLU()),
                   (f"drop{name[2:]}", Dropout(dropout, seed=dropout_seed(seed, name)))]
        features = width
    layers.append(("fc8", Linear(features, num_classes, **common)))
    model = Sequential(*layers)
    if materialize:
        model.reset_parameters(seed)
    return model


def dropout_seed(seed, layer_name) -> int:
    """A 64-bit dropout seed per (model seed, layer): distinct masks per layer."""
    words = np.random.SeedSequence([seed, *layer_name.encode()]).generate_state(2, np.uint32)
    return int(words[0]) | int(words[1]) << 32


# VGG section 3.1: the deeper nets start from net A's first four conv layers
# and its last three fully connected layers; the rest stays random.
_FROM_NET_A = ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8")


def init_from(deeper, net_a, layers=_FROM_NET_A):
    """Copy net A's ``conv1_1, conv2_1, conv3_1, conv3_2, fc6, fc7, fc8``
    weights and biases into the same-named layers of ``deeper`` (B ... E,
    whose other layers keep their random initialisation); returns
    ``deeper``. Shapes must match (same ``num_classes`` and ``input_size``).
    """
    for name in layers:
        try:
            src, dst = net_a[name], deeper[name]
        except KeyError:
            raise ValueError(f"layers: both networks need a layer named {name!r}") from None
        for (pname, s), d in zip(src.named_parameters(), dst.parameters()):
            if s.shape != d.shape:
                raise ValueError(
                    f"deeper: {name}.{pname} has shape {tuple(d.shape)}, net A's {tuple(s.shape)}"
                )
        for s, d in zip(src.parameters(), dst.parameters()):
            s = to_device(s, dst.device)
            be = backend_for(dst.device)
            with be.activate(dst.device):
                d[...] = s
    return deeper
