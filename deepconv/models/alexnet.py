"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012): one tower with grouped
convolutions (``split=1``) or the paper's two explicit columns (``split=2``);
and torchvision's AlexNet, the one-tower variant of Krizhevsky (2014)
(:func:`alexnet_owt`)."""

from __future__ import annotations

from deepconv.backend import device as _device
from deepconv.models.vgg import dropout_seed
from deepconv.nn import Concat, Conv2d, Dropout, Flatten, Graph, Linear, LRN, MaxPool2d, ReLU, Sequential
from deepconv.nn.layer import check_int, check_real

__all__ = ["alexnet", "alexnet_owt", "build_alexnet", "ALEXNET"]

# The paper's geometry: (channels, kernel, stride, padding, groups) per conv;
# groups=2 where a layer reads only its own column (conv2, conv4, conv5).
ALEXNET = dict(
    convs=[(96, 11, 4, 0, 1), (256, 5, 1, 2, 2), (384, 3, 1, 1, 1), (384, 3, 1, 1, 2),
           (256, 3, 1, 1, 2)],
    pool=(3, 2, 0),  # overlapping pooling: 3x3 windows every 2
    fc_width=4096,
    input_size=227,
)

# Section 5: weights from N(0, 0.01^2); biases 1 in conv2, conv4, conv5 and
# the fully connected hidden layers (it gives ReLUs positive inputs early),
# 0 elsewhere (conv1, conv3, and the output layer fc8).
_INIT_STD = 0.01
_BIAS_ONE = {"conv2", "conv4", "conv5", "fc6", "fc7"}


def alexnet(num_classes=1000, split=1, *, dropout=0.5, seed=0, dtype="float32", device="emu:0",
            materialize=True, devices=None):
    """AlexNet for 227x227 inputs: conv 96-256-384-384-256 (11x11/4, 5x5,
    3x3 x3), ReLU everywhere, LRN (size 5, alpha 1e-4, beta 0.75, k 2, the
    paper's convention) after conv1 and conv2, overlapping 3x3/2 max
    pooling after both LRNs and conv5, fc6 / fc7 of 4096 with dropout
    ``dropout`` (scaled at test time, as in the paper), fc8 of
    ``num_classes``. 60,965,224 parameters for 1000 classes.

    ``split=1``: one tower, a Sequential; conv2/4/5 are grouped (groups=2),
    which is the paper's connectivity, but LRN then normalises across all
    96 (256) channels, crossing the column boundary (as Caffe's single-GPU
    AlexNet). ``split=2``: the paper's network, a :class:`~deepconv.nn.Graph`
    whose two columns are node groups "column0" and "column1" (each half of
    every layer, LRN within its column) joined by Concat nodes where the
    columns talk: before conv3 and before each fully connected layer
    (fc8 is one layer, group "classifier"). Same parameter count.

    ``devices`` (``split=2`` only): two devices, e.g. ``("emu:0", "emu:1")``;
    each column is built on its own and the classifier on the first, and
    the graph is placed (:meth:`~deepconv.nn.Graph.place`): activations
    cross only where the paper's columns talk (conv3, fc6, fc7, and fc8
    reading column 1's fc7), both ways in training. Same weights, outputs
    and gradients as the unplaced graph on one device.
    """
    return build_alexnet(ALEXNET, num_classes, split, dropout=dropout, seed=seed, dtype=dtype,
                         device=device, materialize=materialize, devices=devices)


def build_alexnet(spec, num_classes, split, *, dropout, seed, dtype, device, materialize,
                  input_size=None, devices=None):
    """An AlexNet-shaped network from ``spec`` (see ``ALEXNET``; an optional
    ``"in_channels"`` entry, default 3, sets the input channels); ``devices``
    as in :func:`alexnet`."""
    num_classes = check_int(num_classes, "num_classes")
    split = check_int(split, "split")
    if split not in (1, 2):
        raise ValueError(f"split: expected 1 (one tower) or 2 (two columns), got {split}")
    dropout = check_real(dropout, "dropout", low=0.0, high=1.0, high_open=True)
    seed = check_int(seed, "seed", minimum=0)
    size = spec["input_size"] if input_size is None else check_int(input_size, "input_size")
    for i, (c, *_rest, groups) in enumerate(spec["convs"], start=1):
        if c % 2 and (split == 2 or groups == 2):
            raise ValueError(f"width: conv{i} has {c} channels, which does not split into 2 columns")
    if spec["fc_width"] % split:
        raise ValueError(f"fc_width: {spec['fc_width']} does not split into {split} columns")
    flat = _flat_features(spec, size)
    common = dict(weight_init=_INIT_STD, dtype=dtype, device=device, materialize=False)
    if devices is None:
        build = _one_tower if split == 1 else _two_columns
        model = build(spec, num_classes, flat, dropout, seed, common)
    else:
        columns = _column_devices(devices, split)
        model = _two_columns(spec, num_classes, flat, dropout, seed, common, columns)
        model.place({"column0": columns[0], "column1": columns[1], "classifier": columns[0]})
    if materialize:
        model.reset_parameters(seed)
    return model


def _column_devices(devices, split):
    if split != 2:
        raise ValueError(f"devices: only for split=2 (one device per column), got split={split}; "
                         "use device= for one tower")
    if isinstance(devices, (str, bytes)) or not hasattr(devices, "__iter__"):
        raise TypeError(f"devices: expected two devices, got {type(devices).__name__}")
    found = [_device(d, arg=f"devices[{i}]") for i, d in enumerate(devices)]
    if len(found) != 2:
        raise ValueError(f"devices: expected two devices (one per column), got {len(found)}")
    return found


def _flat_features(spec, size):
    """Channels x height x width entering fc6, checking the input fits."""
    k, s, p = spec["pool"]
    for i, (_, kernel, stride, pad, _) in enumerate(spec["convs"], start=1):
        if kernel > size + 2 * pad:
            raise ValueError(f"input_size: too small, conv{i} sees a {size}x{size} map")
        size = (size + 2 * pad - kernel) // stride + 1
        if i in (1, 2, 5):
            if k > size + 2 * p:
                raise ValueError(f"input_size: too small, pool after conv{i} sees {size}x{size}")
            size = (size + 2 * p - k) // s + 1
    return spec["convs"][-1][0] * size * size


def _conv(spec, i, in_ch, common, columns, grouped=True, **extra):
    """conv``i`` (1-based) of one column (``columns`` = 2: half the filters,
    no groups) or of the whole tower."""
    c, kernel, stride, pad, groups = spec["convs"][i - 1]
    return Conv2d(in_ch, c // columns, kernel, stride, pad, groups=groups if columns == 1 else 1,
                  bias_init=1.0 if f"conv{i}" in _BIAS_ONE else 0.0, **common, **extra)


def _one_tower(spec, num_classes, flat, dropout, seed, common):
    k, s, p = spec["pool"]
    layers, in_ch = [], spec.get("in_channels", 3)
    for i in range(1, 6):
        layers += [(f"conv{i}", _conv(spec, i, in_ch, common, 1, input_grad=i > 1)),
                   (f"relu{i}", ReLU())]
        if i in (1, 2):
            layers.append((f"lrn{i}", LRN()))
        if i in (1, 2, 5):
            layers.append((f"pool{i}", MaxPool2d(k, s, p)))
        in_ch = spec["convs"][i - 1][0]
    layers.append(("flatten", Flatten()))
    features = flat
    for name in ("fc6", "fc7"):
        layers += [(name, Linear(features, spec["fc_width"], bias_init=1.0, **common)),
                   (f"relu{name[2:]}", ReLU()),
                   (f"drop{name[2:]}", Dropout(dropout, dropout_seed(seed, name), scale_at="test"))]
        features = spec["fc_width"]
    layers.append(("fc8", Linear(features, num_classes, **common)))
    return Sequential(*layers)


def _two_columns(spec, num_classes, flat, dropout, seed, common, devices=None):
    """The two-column graph; with ``devices``, column c's layers (and the
    classifier, column 0's) are built on ``devices[c]``."""
    k, s, p = spec["pool"]
    at = [dict(common, device=d) for d in devices] if devices else [common, common]
    g = Graph()
    heads = ["input", "input"]  # what each column reads next
    in_ch = [spec.get("in_channels", 3)] * 2
    for i in range(1, 6):
        if i == 3:  # conv3 reads both columns' conv2 maps
            joined = g.add("concat2", Concat(), *heads)
            heads = [joined, joined]
            in_ch = [spec["convs"][1][0]] * 2
        for col, suffix in enumerate("ab"):
            group = f"column{col}"
            h = g.add(f"conv{i}{suffix}",
                      _conv(spec, i, in_ch[col], at[col], 2, input_grad=i > 1), heads[col],
                      group=group)
            h = g.add(f"relu{i}{suffix}", ReLU(), h, group=group)
            if i in (1, 2):
                h = g.add(f"lrn{i}{suffix}", LRN(), h, group=group)
            if i in (1, 2, 5):
                h = g.add(f"pool{i}{suffix}", MaxPool2d(k, s, p), h, group=group)
            heads[col] = h
            in_ch[col] = spec["convs"][i - 1][0] // 2
    joined = g.add("concat5", Concat(), *heads)  # fc6 reads both columns' pool5
    features = flat
    for name in ("fc6", "fc7"):
        n = name[2:]
        for col, suffix in enumerate("ab"):
            group = f"column{col}"
            h = g.add(f"{name}{suffix}", Linear(features, spec["fc_width"] // 2, bias_init=1.0,
                                                **at[col]), joined, group=group)
            h = g.add(f"relu{n}{suffix}", ReLU(), h, group=group)
            heads[col] = g.add(f"drop{n}{suffix}", Dropout(dropout, dropout_seed(seed, name + suffix),
                                                          scale_at="test"), h, group=group)
        joined = g.add(f"concat{n}", Concat(), *heads)  # the next layer reads both
        features = spec["fc_width"]
    g.add("fc8", Linear(features, num_classes, **at[0]), joined, group="classifier")
    return g.output("fc8")


# torchvision's AlexNet ("One weird trick", Krizhevsky 2014, one tower):
# (channels, kernel, stride, padding) per conv; no LRN, no groups.
ALEXNET_OWT_CONVS = [(64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1),
                     (256, 3, 1, 1)]
_OWT_POOLED = (1, 2, 5)  # a 3x3 / 2 max pooling after these convs


def alexnet_owt(num_classes=1000, input_size=224, *, dropout=0.5, seed=0, dtype="float32",
                device="emu:0", materialize=True):
    """torchvision's ``alexnet``: conv 64-192-384-256-256 (11x11/4 pad 2,
    5x5 pad 2, 3x3 pad 1 x3), ReLU after each, 3x3 / 2 max pooling after
    conv1, conv2 and conv5, then dropout, fc6 (4096), ReLU, dropout, fc7
    (4096), ReLU, fc8 (``num_classes``): torchvision's layer order
    (dropout *before* fc6 and fc7, inverted dropout scaled in training).
    61,100,840 parameters for 1000 classes. Load torchvision's weights with
    :func:`deepconv.interop.load_torchvision`.

    torchvision puts an ``AdaptiveAvgPool2d((6, 6))`` between the features
    and the classifier: at 224 x 224 inputs (and up to 227) the last
    pooling already gives 6 x 6 maps, so it is the identity and is left
    out; other ``input_size`` values, whose maps torchvision would resample,
    raise ValueError.
    """
    num_classes = check_int(num_classes, "num_classes")
    size = check_int(input_size, "input_size")
    dropout = check_real(dropout, "dropout", low=0.0, high=1.0, high_open=True)
    seed = check_int(seed, "seed", minimum=0)
    for i, (_, kernel, stride, pad) in enumerate(ALEXNET_OWT_CONVS, start=1):
        size = max(0, (size + 2 * pad - kernel) // stride + 1)
        if i in _OWT_POOLED:
            size = max(0, (size - 3) // 2 + 1)
    if size != 6:
        raise ValueError(f"input_size: {input_size} gives {size}x{size} maps before the "
                         "classifier, torchvision's AlexNet wants 6x6 (input 224..227; "
                         "torchvision's adaptive average pooling is not modelled)")
    # torchvision's initialisation (kaiming-uniform, PyTorch's default) is
    # not reproduced: Glorot here, zero biases; pretrained weights replace both.
    common = dict(weight_init="glorot", bias_init=0.0, dtype=dtype, device=device,
                  materialize=False)
    layers, in_ch = [], 3
    for i, (c, kernel, stride, pad) in enumerate(ALEXNET_OWT_CONVS, start=1):
        layers += [(f"conv{i}", Conv2d(in_ch, c, kernel, stride, pad, input_grad=i > 1, **common)),
                   (f"relu{i}", ReLU())]
        if i in _OWT_POOLED:
            layers.append((f"pool{i}", MaxPool2d(3, 2)))
        in_ch = c
    layers.append(("flatten", Flatten()))
    features = in_ch * 6 * 6
    for name in ("fc6", "fc7"):
        n = name[2:]
        layers += [(f"drop{n}", Dropout(dropout, dropout_seed(seed, name))),
                   (name, Linear(features, 4096, **common)), (f"relu{n}", ReLU())]
        features = 4096
    layers.append(("fc8", Linear(features, num_classes, **common)))
    model = Sequential(*layers)
    if materialize:
        model.reset_parameters(seed)
    return model
