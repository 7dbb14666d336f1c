"""ReLU: a layer over deepconv.ops.relu / relu_backward."""

from __future__ import annotations

from deepconv.nn.layer import Layer, args_repr, check_bool, check_input
from deepconv.ops import relu, relu_backward

__all__ = ["ReLU"]


class ReLU(Layer):
    """``y = max(x, 0)``.

    ``inplace=True`` overwrites the input (and, in backward, the incoming
    gradient): saves memory after a layer whose backward does not read its
    output (Conv2d, Linear), wrong after one that does (MaxPool2d, LRN).

    When a :class:`~deepconv.nn.Sequential` or :class:`~deepconv.nn.Graph`
    finds this layer right after a Conv2d or Linear, it fuses the two: the
    convolution applies ReLU in its epilogue (``relu=True``) and this
    layer's forward passes its input through (``fused`` is True). Backward
    is the same either way: ``relu_backward`` reads only the output, which
    is the convolution's (already rectified) output.
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = check_bool(inplace, "inplace")
        self.fused = False
        self._y = None

    def forward(self, x):
        check_input(x, "x")
        if self.fused:
            y = x
        else:
            y = relu(x, out=x if self.inplace else self._buffer_like("y", x))
        self._y = y
        return y

    def backward(self, dy):
        if self._y is None:
            raise RuntimeError("ReLU.backward: call forward first")
        check_input(dy, "dy")
        out = dy if self.inplace else self._buffer_like("dx", dy)
        return relu_backward(self._y, dy, out=out)

    def to(self, device):
        self._y = None
        return super().to(device)

    def extra_repr(self):
        return args_repr(inplace=(self.inplace, False))
