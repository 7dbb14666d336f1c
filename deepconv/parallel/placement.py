"""Where a model's bytes go when it is split across devices: closed-form
communication counts per training step, from parameter shapes alone (models
built with ``materialize=False`` suffice, so full-size VGG and AlexNet cost
nothing to count).

Two schemes, ``D`` devices, global batch ``B``, ``itemsize`` bytes a value:

- data parallel: every layer replicated; the gradients of all ``P``
  parameters are gathered and the weights broadcast,
  ``2 * P * (D - 1)`` values (a ring all-reduce moves the same total);
- hybrid (Krizhevsky 2014, "One weird trick for parallelizing convolutional
  neural networks"): the convolutional layers data parallel (their ``P_conv``
  parameters synchronised as above) and the fully connected layers model
  parallel, each device holding ``1/D`` of every FC layer's output units.
  What crosses devices instead of FC gradients are activations: the input
  of every FC layer (``B x F`` values; for fc6 the last conv layer's
  output, each device holding its batch shard; for the next ones the
  previous FC layer's output, each device holding its slice of units) is
  sent to the ``D - 1`` other devices in the forward pass, and its
  gradient, of which each device computes a partial sum for all ``B``
  examples, goes back to the owners in the backward pass:
  ``2 * B * F * (D - 1)`` values per FC layer. The classifier's logits
  (``B x K``) are gathered once for the loss: ``B * K * (D - 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepconv.nn import Conv2d, Linear

__all__ = ["CommunicationCost", "communication_cost", "split_parameters"]


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


@dataclass(frozen=True)
class CommunicationCost:
    """Bytes moved between devices in one training step, per scheme."""

    data_parallel: int
    hybrid_conv_gradients: int
    hybrid_fc_activations: int

    @property
    def hybrid(self) -> int:
        return self.hybrid_conv_gradients + self.hybrid_fc_activations

    @property
    def ratio(self) -> float:
        """hybrid / data parallel (0 on one device, where neither moves)."""
        return self.hybrid / self.data_parallel if self.data_parallel else 0.0


def communication_cost(model, batch: int, num_devices: int, itemsize: int = 4) -> CommunicationCost:
    """Closed-form bytes per step of ``model`` on ``num_devices`` devices at
    global batch ``batch`` under data parallelism and the hybrid scheme (see
    the module docstring). Inputs are assumed already on their devices."""
    if num_devices < 1 or batch < 1 or itemsize < 1:
        raise ValueError(f"batch, num_devices, itemsize: expected ints >= 1, got "
                         f"{batch}, {num_devices}, {itemsize}")
    parts = split_parameters(model)
    others = num_devices - 1
    total = parts["conv"] + parts["fc"] + parts["other"]
    activations = sum(2 * batch * f * others for f in parts["fc_inputs"])
    activations += batch * parts["classes"] * others
    return CommunicationCost(
        data_parallel=2 * total * others * itemsize,
        hybrid_conv_gradients=2 * (parts["conv"] + parts["other"]) * others * itemsize,
        hybrid_fc_activations=activations * itemsize,
    )
