"""Flatten: (N, C, H, W) -> (N, C*H*W), a view (no copy, no kernel)."""

from __future__ import annotations

import math

from deepconv.nn.layer import Layer, check_input, check_shape

__all__ = ["Flatten"]


class Flatten(Layer):
    """Keeps the batch axis and flattens the rest in C order (NCHW), as
    cuda-convnet and Caffe feed a pooled map to a fully connected layer."""

    def __init__(self):
        super().__init__()
        self._shape = None

    def output_shape(self, input_shape):
        shape = check_shape(input_shape, "input_shape")
        if len(shape) < 1:
            raise ValueError("input_shape: expected at least a batch axis")
        return (shape[0], math.prod(shape[1:]))

    def forward(self, x):
        check_input(x, "x")
        if x.ndim < 1:
            raise ValueError("x: expected at least a batch axis, got a 0-d array")
        self._shape = tuple(x.shape)
        return x.reshape(self.output_shape(x.shape))

    def backward(self, dy):
        if self._shape is None:
            raise RuntimeError("Flatten.backward: call forward first")
        check_input(dy, "dy")
        return dy.reshape(self._shape)
