"""MaxPool2d: a layer over deepconv.ops.max_pool2d / max_pool2d_backward."""

from __future__ import annotations

from deepconv.nn.layer import (
    Layer, args_repr, check_bool, check_input, check_pair, check_shape, short_pair,
)
from deepconv.ops import max_pool2d, max_pool2d_backward
from deepconv.ops.pool import pool_output_size

__all__ = ["MaxPool2d"]


class MaxPool2d(Layer):
    """Max pooling over ``kernel_size`` windows every ``stride`` (default:
    the window, i.e. no overlap; AlexNet overlaps with 3 / 2, VGG uses 2 / 2).
    ``padding`` (at most half the window) never wins the max; ``ceil_mode``
    rounds the output size up, as Caffe.

    Backward needs the forward input and output unchanged (the arg-max is
    recomputed from them): do not run a layer in place on either.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size = check_pair(kernel_size, "kernel_size", minimum=1)
        self.stride = self.kernel_size if stride is None else check_pair(stride, "stride", minimum=1)
        self.padding = check_pair(padding, "padding", minimum=0)
        for axis in (0, 1):
            if 2 * self.padding[axis] > self.kernel_size[axis]:
                raise ValueError(
                    f"padding: expected at most half the window {self.kernel_size}, got {self.padding}"
                )
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self._saved = None

    def _args(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    ceil_mode=self.ceil_mode)

    def output_shape(self, input_shape):
        n, c, h, w = check_shape(input_shape, "input_shape", ndim=4)
        out = []
        for axis, size in enumerate((h, w)):
            k, s, p = self.kernel_size[axis], self.stride[axis], self.padding[axis]
            if k > size + 2 * p:
                raise ValueError(
                    f"input_shape: the window {self.kernel_size} is larger than the padded input "
                    f"{(h, w)} (padding {self.padding})"
                )
            out.append(pool_output_size(size, k, s, p, self.ceil_mode))
        return (n, c, out[0], out[1])

    def forward(self, x):
        check_input(x, "x", ndim=4)
        y = self._buffer_like("y", x, self.output_shape(x.shape))
        max_pool2d(x, out=y, **self._args())
        self._saved = (x, y)
        return y

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("MaxPool2d.backward: call forward first")
        x, y = self._saved
        check_input(dy, "dy", ndim=4)
        return max_pool2d_backward(x, y, dy, out=self._buffer_like("dx", x), **self._args())

    def to(self, device):
        self._saved = None
        return super().to(device)

    def extra_repr(self):
        rest = args_repr(stride=(short_pair(self.stride), short_pair(self.kernel_size)),
                         padding=(short_pair(self.padding), 0), ceil_mode=(self.ceil_mode, False))
        return f"{short_pair(self.kernel_size)}" + (", " + rest if rest else "")
