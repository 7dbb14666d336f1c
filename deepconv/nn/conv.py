"""Conv2d: a layer over deepconv.ops.conv2d / conv2d_dgrad / conv2d_wgrad."""

from __future__ import annotations

import math

import numpy as np

from deepconv.nn.layer import (
    Layer,
    args_repr,
    check_bool,
    check_input,
    check_int,
    check_pair,
    check_real,
    check_shape,
    make_rng,
    short_pair,
)
from deepconv.ops import conv2d, conv2d_dgrad, conv2d_output_shape, conv2d_wgrad
from deepconv.ops.conv import check_algorithm

__all__ = ["Conv2d", "check_weight_init", "init_values"]


class Conv2d(Layer):
    """2-D convolution, NCHW: ``weight`` (out_channels, in_channels // groups,
    kh, kw), ``bias`` (out_channels,).

    ``relu=True`` applies ReLU in the convolution's epilogue (a
    :class:`~deepconv.nn.Sequential` or :class:`~deepconv.nn.Graph` sets it
    when a ReLU layer follows; that ReLU layer then does the backward).
    ``weight_init``: a float, the standard deviation of a zero-mean normal
    (default 0.01, AlexNet's), or ``"glorot"`` (Glorot & Bengio's uniform);
    ``bias_init``: the constant the biases start at. ``input_grad=False``
    skips dx in backward (a network's first layer: nothing to send it to).
    ``algorithm``: the convolution algorithm of all three passes, one of
    ``deepconv.ops.ALGORITHMS`` (``"auto"``, ``"implicit_gemm"``,
    ``"winograd"``, ...), or None for the process-wide default
    (``deepconv.set_conv_algorithm``) at each call.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1,
                 bias=True, *, relu=False, weight_init=0.01, bias_init=0.0, input_grad=True,
                 dtype="float32", device="emu:0", rng=None, materialize=True, algorithm=None):
        super().__init__(dtype, device)
        self.in_channels = check_int(in_channels, "in_channels")
        self.out_channels = check_int(out_channels, "out_channels")
        self.kernel_size = check_pair(kernel_size, "kernel_size", minimum=1)
        self.stride = check_pair(stride, "stride", minimum=1)
        self.padding = check_pair(padding, "padding", minimum=0)
        self.groups = check_int(groups, "groups")
        if self.in_channels % self.groups:
            raise ValueError(f"groups: {self.groups} does not divide in_channels={self.in_channels}")
        if self.out_channels % self.groups:
            raise ValueError(f"groups: {self.groups} does not divide out_channels={self.out_channels}")
        self.bias = check_bool(bias, "bias")
        self.relu = check_bool(relu, "relu")
        self.weight_init = check_weight_init(weight_init, "weight_init")
        self.bias_init = check_real(bias_init, "bias_init")
        self.input_grad = check_bool(input_grad, "input_grad")
        self.algorithm = None if algorithm is None else check_algorithm(
            algorithm, self.kernel_size, self.stride, self.padding)
        self._x = None
        if check_bool(materialize, "materialize"):
            self.reset_parameters(rng)

    @property
    def weight_shape(self):
        return (self.out_channels, self.in_channels // self.groups) + self.kernel_size

    def parameter_shapes(self):
        shapes = {"weight": self.weight_shape}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def reset_parameters(self, rng=None):
        k, cg, r, s = self.weight_shape
        # Fans count every input a filter sees (channels x window), as Glorot.
        values = {"weight": init_values(make_rng(rng), self.weight_shape, self.weight_init,
                                        fan_in=cg * r * s, fan_out=k // self.groups * r * s)}
        if self.bias:
            values["bias"] = np.full(self.out_channels, self.bias_init)
        self._set_parameters(values)
        return self

    def output_shape(self, input_shape):
        shape = check_shape(input_shape, "input_shape", ndim=4)
        if shape[1] != self.in_channels:
            raise ValueError(f"input_shape: expected {self.in_channels} channels, got shape {shape}")
        return conv2d_output_shape(shape, self.weight_shape, self.stride, self.padding, self.groups)

    def forward(self, x):
        check_input(x, "x", ndim=4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected {self.in_channels} channels, got shape {tuple(x.shape)}")
        self._require_materialized()
        y = self._buffer_like("y", x, self.output_shape(x.shape))
        conv2d(x, self.params["weight"], self.params.get("bias"), self.stride, self.padding,
               self.groups, relu=self.relu, out=y, algorithm=self.algorithm)
        self._x = x
        return y

    def backward(self, dy):
        """Returns dx (None when ``input_grad`` is False); writes
        ``grads["weight"]`` and ``grads["bias"]``. ``dy`` is the gradient of
        the convolution's output (after ReLU's backward if ``relu``)."""
        x = self._forward_input()
        check_input(dy, "dy", ndim=4)
        conv2d_wgrad(x, dy, self.weight_shape, self.stride, self.padding, self.groups,
                     with_bias=self.bias, out=self.grads["weight"], out_bias=self.grads.get("bias"),
                     algorithm=self.algorithm)
        if not self.input_grad:
            return None
        dx = self._buffer_like("dx", x)
        return conv2d_dgrad(dy, self.params["weight"], x.shape, self.stride, self.padding,
                            self.groups, out=dx, algorithm=self.algorithm)

    def _forward_input(self):
        if self._x is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward first")
        return self._x

    def to(self, device):
        self._x = None
        return super().to(device)

    def extra_repr(self):
        head = f"{self.in_channels}, {self.out_channels}, kernel_size={short_pair(self.kernel_size)}"
        rest = args_repr(stride=(short_pair(self.stride), 1), padding=(short_pair(self.padding), 0),
                         groups=(self.groups, 1), bias=(self.bias, True), relu=(self.relu, False),
                         algorithm=(self.algorithm, None))
        return head + (", " + rest if rest else "")


def check_weight_init(value, name):
    if value == "glorot":
        return value
    if isinstance(value, str):
        raise ValueError(f"{name}: expected a standard deviation (float) or 'glorot', got {value!r}")
    return check_real(value, name, low=0.0)


def init_values(rng, shape, weight_init, fan_in, fan_out):
    """Host (float64) initial weights: zero-mean normal with std
    ``weight_init``, or Glorot's uniform on +-sqrt(6 / (fan_in + fan_out))."""
    if weight_init == "glorot":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape)
    return rng.normal(0.0, weight_init, size=shape)

