"""Where a model's bytes go when it is split across devices: closed-form
communication counts per training step, from layer shapes alone (models
built with ``materialize=False`` suffice, so full-size VGG and AlexNet cost
nothing to count). Each count is the one the matching executor moves, as
seen by :func:`deepconv.transfer_stats` (the tests check it).

Three schemes, ``D`` devices, global batch ``B``, ``itemsize`` bytes a value:

- data parallel (:class:`~deepconv.parallel.DataParallel`): every layer
  replicated; the gradients of all ``P`` parameters are gathered onto the
  first device and the weights broadcast back, ``2 * P * (D - 1)`` values
  (a ring all-reduce moves the same total).
- model parallel (:func:`model_parallel_bytes`; AlexNet's columns,
  ``alexnet(split=2, devices=...)``): every Conv2d / Linear split by output
  channels, device ``d`` holding the ``d``-th ``1/D`` of them, except the
  classifier, which stays whole on the first device (as AlexNet's fc8). A
  layer's input channels that its filters read but another device holds
  cross in the forward pass, their gradient back in the backward pass; a
  grouped convolution whose groups stay within a device reads nothing
  remote (AlexNet's conv2, conv4, conv5 on two devices); the input images
  go from the first device to the others (forward only). Local layers
  (ReLU, pooling, LRN within a device's channels as in the paper, dropout)
  move nothing.
- hybrid (:class:`~deepconv.parallel.Hybrid`; Krizhevsky 2014, "One weird
  trick for parallelizing convolutional neural networks"): the
  convolutional layers data parallel (their ``P_conv`` parameters, and any
  others outside the FC layers, synchronised as above) and the fully
  connected layers model parallel, each device holding a slice of every FC
  layer's output units (:func:`~deepconv.parallel.shard_sizes` of them).
  What crosses devices instead of FC gradients are activations: the input
  of every FC layer (``B x F`` values; for fc6 the conv features, each
  device holding its batch shard; for the next ones the previous FC
  layer's output, each device holding its units) is sent to the ``D - 1``
  other devices in the forward pass, and its gradient, of which each
  device computes a partial sum for all ``B`` examples, goes back to the
  owners in the backward pass: ``2 * B * F * (D - 1)`` values per FC
  layer. The logits (``B x K``, ``K_0`` of them on the first device) are
  gathered onto the first device for the loss and their gradient sent
  back: ``2 * B * (K - K_0)`` values (an earlier version of this module
  counted ``B * K * (D - 1)``, a gather onto every device, which the
  executor does not need).
"""

from __future__ import annotations

from dataclasses import dataclass

from deepconv.nn import Conv2d, Linear
from deepconv.parallel.data_parallel import shard_sizes

__all__ = ["CommunicationCost", "communication_cost", "hybrid_step_bytes", "model_parallel_bytes",
           "split_parameters"]


def _leaves(model):
    return model.named_layers() if hasattr(model, "named_layers") else [("", model)]


def split_parameters(model) -> dict:
    """``{"conv": P_conv, "fc": P_fc, "other": P_other, "fc_inputs": [F...],
    "classes": K}`` from the shapes of ``model``'s layers: parameters of
    Conv2d layers, of Linear layers (with each Linear's in_features, in
    order, and the last one's out_features), and of anything else. A model
    split into columns counts each column's Linear separately; pass the
    one-tower form to get the paper's FC widths."""
    counts = {"conv": 0, "fc": 0, "other": 0}
    fc_inputs, classes = [], 0
    for _, layer in _leaves(model):
        n = sum(_prod(s) for s in layer.parameter_shapes().values())
        if isinstance(layer, Conv2d):
            counts["conv"] += n
        elif isinstance(layer, Linear):
            counts["fc"] += n
            fc_inputs.append(layer.in_features)
            classes = layer.out_features
        else:
            counts["other"] += n
    return dict(counts, fc_inputs=fc_inputs, classes=classes)


def _prod(shape):
    out = 1
    for d in shape:
        out *= int(d)
    return out


def _check_counts(batch, num_devices, itemsize):
    if batch < 1 or num_devices < 1 or itemsize < 1:
        raise ValueError(f"batch, num_devices, itemsize: expected ints >= 1, got "
                         f"{batch}, {num_devices}, {itemsize}")


def hybrid_step_bytes(model, batch: int, num_devices: int, itemsize: int = 4, *,
                      example_bytes: int = 0) -> int:
    """Bytes one :meth:`Hybrid.train_step <deepconv.parallel.Hybrid.train_step>`
    moves (closed form, see the module docstring): conv (and other non-FC)
    parameter gradients gathered and weights broadcast, every FC input
    all-gathered and its gradient returned, the logits gathered for the
    loss and their gradient sent back; plus, when the batch starts on the
    first device, the input shards sent to the others:
    ``(batch - n_0) * example_bytes`` (the labels stay on the first device,
    where the loss is computed)."""
    _check_counts(batch, num_devices, itemsize)
    parts = split_parameters(model)
    others = num_devices - 1
    conv = 2 * (parts["conv"] + parts["other"]) * others
    acts = sum(2 * batch * f * others for f in parts["fc_inputs"])
    logits = 2 * batch * (parts["classes"] - shard_sizes(parts["classes"], num_devices)[0])
    inputs = (batch - shard_sizes(batch, num_devices)[0]) * example_bytes
    return (conv + acts + logits) * itemsize + inputs


def model_parallel_bytes(model, input_shape, num_devices: int, itemsize: int = 4) -> int:
    """Bytes one training step of ``model`` (a chain of layers, e.g. the
    one-tower :func:`~deepconv.models.alexnet` or :func:`~deepconv.models.vgg`)
    moves when model parallel over ``num_devices`` devices (see the module
    docstring), for a batch of ``input_shape`` (N, C, H, W) starting on the
    first device. For AlexNet on two devices this is what
    ``alexnet(split=2, devices=...)`` moves."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape: expected (N, C, H, W) of ints >= 1, got {input_shape!r}")
    _check_counts(shape[0], num_devices, itemsize)
    layers = [layer for _, layer in _leaves(model)]
    weighted = [i for i, layer in enumerate(layers) if isinstance(layer, (Conv2d, Linear))]
    if not weighted:
        raise ValueError("model: expected at least one Conv2d or Linear layer")
    total, split = 0, False  # split: the current activation's channels are spread over devices
    for i, layer in enumerate(layers):
        if isinstance(layer, (Conv2d, Linear)):
            channels, spatial = shape[1], _prod(shape[2:])
            received = _received_channels(layer, channels, num_devices, split,
                                          classifier=i == weighted[-1])
            total += shape[0] * spatial * received * (2 if split else 1)  # the images have no gradient
            split = i != weighted[-1]
        shape = tuple(layer.output_shape(shape))
    return total * itemsize


def _received_channels(layer, channels, num_devices, split, classifier):
    """Input channels (features, for a Linear) summed over devices that a
    layer's device reads from another device."""
    held = shard_sizes(channels, num_devices) if split else [channels] + [0] * (num_devices - 1)
    if classifier:
        return channels - held[0]
    out = layer.out_channels if isinstance(layer, Conv2d) else layer.out_features
    groups = layer.groups if isinstance(layer, Conv2d) else 1
    if out % num_devices:
        raise ValueError(f"model: a layer with {out} output channels does not split over "
                         f"{num_devices} devices")
    per_device, per_group, group_in = out // num_devices, out // groups, channels // groups
    starts = [sum(held[:d]) for d in range(num_devices)]
    received = 0
    for d in range(num_devices):
        first, last = d * per_device // per_group, ((d + 1) * per_device - 1) // per_group
        lo, hi = first * group_in, (last + 1) * group_in  # the input channels its filters read
        mine = max(0, min(hi, starts[d] + held[d]) - max(lo, starts[d]))
        received += (hi - lo) - mine
    return received


@dataclass(frozen=True)
class CommunicationCost:
    """Bytes moved between devices in one training step, per scheme
    (``model_parallel`` is None when no input size was given)."""

    data_parallel: int
    hybrid_conv_gradients: int
    hybrid_fc_activations: int
    model_parallel: int | None = None

    @property
    def hybrid(self) -> int:
        return self.hybrid_conv_gradients + self.hybrid_fc_activations

    @property
    def ratio(self) -> float:
        """hybrid / data parallel (0 on one device, where neither moves)."""
        return self.hybrid / self.data_parallel if self.data_parallel else 0.0


def communication_cost(model, batch: int, num_devices: int, itemsize: int = 4, *,
                       input_size=None) -> CommunicationCost:
    """Closed-form bytes per step of ``model`` on ``num_devices`` devices at
    global batch ``batch`` under data parallelism and the hybrid scheme, and
    model parallelism too when ``input_size`` (the images' height = width)
    is given (see the module docstring). Inputs are assumed already on their
    devices for data parallel and hybrid; the model-parallel figure counts
    the images sent from the first device."""
    _check_counts(batch, num_devices, itemsize)
    parts = split_parameters(model)
    others = num_devices - 1
    total = parts["conv"] + parts["fc"] + parts["other"]
    conv = 2 * (parts["conv"] + parts["other"]) * others * itemsize
    model_parallel = None
    if input_size is not None:
        channels = next(layer.in_channels for _, layer in _leaves(model) if isinstance(layer, Conv2d))
        model_parallel = model_parallel_bytes(model, (batch, channels, input_size, input_size),
                                              num_devices, itemsize)
    return CommunicationCost(
        data_parallel=2 * total * others * itemsize,
        hybrid_conv_gradients=conv,
        hybrid_fc_activations=hybrid_step_bytes(model, batch, num_devices, itemsize) - conv,
        model_parallel=model_parallel,
    )

