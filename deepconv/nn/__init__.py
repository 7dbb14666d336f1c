"""Layers and graphs: explicit forward / backward over deepconv.ops.

A layer validates its arguments when built, allocates its parameters in
``reset_parameters(rng)``, computes ``y = forward(x)`` and
``dx = backward(dy)`` (filling ``layer.grads``), and lists its
``parameters()`` / ``gradients()`` (arrays) and ``named_parameters()`` /
``named_gradients()`` ((name, array) pairs), as PyTorch does; with
``state_dict()`` / ``load_state_dict()`` and ``summary(input_shape)``. Containers
(:class:`Sequential`, :class:`Graph`) compose layers and fuse Conv2d + ReLU.
"""

from deepconv.nn.activation import ReLU
from deepconv.nn.conv import Conv2d
from deepconv.nn.dropout import Dropout
from deepconv.nn.flatten import Flatten
from deepconv.nn.graph import Graph, Sequential
from deepconv.nn.join import Concat, Split
from deepconv.nn.layer import Layer, count_parameters
from deepconv.nn.linear import Linear
from deepconv.nn.loss import SoftmaxCrossEntropy
from deepconv.nn.lrn import LRN
from deepconv.nn.pool import MaxPool2d

__all__ = [
    "Concat",
    "Conv2d",
    "Dropout",
    "Flatten",
    "Graph",
    "LRN",
    "Layer",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "Sequential",
    "SoftmaxCrossEntropy",
    "Split",
    "count_parameters",
]
