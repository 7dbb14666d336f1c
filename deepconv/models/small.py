"""Small VGG- and AlexNet-shaped networks for small images (8x8, 32x32):
the same layer types and connectivity at a fraction of the width, for tests,
the emulator and datasets such as CIFAR-10."""

from __future__ import annotations

from deepconv.models.alexnet import build_alexnet
from deepconv.models.vgg import VGG_CONFIGS, build_vgg
from deepconv.nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from deepconv.nn.layer import check_int

__all__ = ["vgg_small", "alexnet_small", "digits_net"]


def vgg_small(config="A", input_size=32, num_classes=10, width=8, fc_width=64, *, init="normal",
              dropout=0.5, seed=0, dtype="float32", device="emu:0", materialize=True,
              in_channels=3):
    """VGG ``config`` with channels ``width, 2w, 4w, 8w, 8w`` per block (the
    paper's 64 ... 512 is width=64) and fc6 / fc7 of ``fc_width``. Uses as
    many of the five blocks as the input allows while keeping at least a
    1x1 map: 5 for 32x32 inputs, 3 for 8x8. ``in_channels``: 3 for RGB, 1
    for grey images such as digits. Other arguments as
    :func:`~deepconv.models.vgg`."""
    if config not in VGG_CONFIGS:
        raise ValueError(f"config: expected one of {sorted(VGG_CONFIGS)}, got {config!r}")
    input_size = check_int(input_size, "input_size", minimum=2)
    width = check_int(width, "width")
    blocks = min(5, input_size.bit_length() - 1)  # floor(log2(input_size))
    scale = [1, 2, 4, 8, 8]
    widths = [[width * scale[b]] * len(VGG_CONFIGS[config][b]) for b in range(blocks)]
    return build_vgg(config, widths, fc_width, num_classes, input_size, init=init,
                     dropout=dropout, seed=seed, dtype=dtype, device=device,
                     materialize=materialize, in_channels=in_channels)


def alexnet_small(num_classes=10, input_size=32, width=1, fc_width=64, split=1, *, dropout=0.5,
                  seed=0, dtype="float32", device="emu:0", materialize=True, in_channels=3):
    """AlexNet's shape for small images: conv channels ``(6, 16, 24, 24, 16)
    x width`` (width=16 is AlexNet's 96-256-384-384-256), conv1 5x5 stride 1
    pad 2 instead of 11x11 stride 4, conv2 5x5, conv3-5 3x3, groups=2 in
    conv2/4/5 (or two columns, ``split=2``), LRN after conv1 and conv2, 3x3
    stride-2 max pooling padded by 1 (so 8x8 inputs still reach a 1x1 map:
    32 -> 16 -> 8 -> 4, 8 -> 4 -> 2 -> 1), fc6 / fc7 of ``fc_width`` with
    dropout, fc8 of ``num_classes``. Initialisation as AlexNet.
    ``in_channels``: 3 for RGB, 1 for grey images such as digits."""
    width = check_int(width, "width")
    spec = dict(
        convs=[(6 * width, 5, 1, 2, 1), (16 * width, 5, 1, 2, 2), (24 * width, 3, 1, 1, 1),
               (24 * width, 3, 1, 1, 2), (16 * width, 3, 1, 1, 2)],
        pool=(3, 2, 1),
        fc_width=check_int(fc_width, "fc_width"),
        input_size=32,
        in_channels=check_int(in_channels, "in_channels"),
    )
    return build_alexnet(spec, num_classes, split, dropout=dropout, seed=seed, dtype=dtype,
                         device=device, materialize=materialize, input_size=input_size)


def digits_net(num_classes=10, in_channels=1, width=32, *, seed=0, dtype="float32",
               device="emu:0"):
    """The ``deepconv train`` default for 8x8 images: conv3x3-w, conv3x3-w,
    pool, conv3x3-2w, pool, fc (VGG's pattern at digits' scale). Glorot
    initialisation (no normalisation layers, so a scaled init matters)."""
    common = dict(weight_init="glorot", dtype=dtype, device=device, materialize=False)
    model = Sequential(
        ("conv1", Conv2d(in_channels, width, 3, padding=1, input_grad=False, **common)),
        ("relu1", ReLU()),
        ("conv2", Conv2d(width, width, 3, padding=1, **common)), ("relu2", ReLU()),
        ("pool2", MaxPool2d(2, 2)),
        ("conv3", Conv2d(width, 2 * width, 3, padding=1, **common)), ("relu3", ReLU()),
        ("pool3", MaxPool2d(2, 2)),
        ("flatten", Flatten()),
        ("fc", Linear(2 * width * 2 * 2, num_classes, **common)),
    )
    return model.reset_parameters(seed)
