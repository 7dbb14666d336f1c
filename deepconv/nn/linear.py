"""Linear (fully connected): a convolution whose filter covers its whole
input, so it runs on the conv kernels and turns into a Conv2d for VGG's
dense evaluation without copying a weight."""

from __future__ import annotations

import numpy as np

from deepconv.nn.conv import Conv2d, check_weight_init, init_values
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
)
from deepconv.ops import conv2d, conv2d_dgrad, conv2d_wgrad

__all__ = ["Linear"]


class Linear(Layer):
    """``y = x W^T + b``: ``weight`` (out_features, in_features), ``bias``
    (out_features,), the layout of PyTorch's ``nn.Linear``.

    ``x`` is (N, in_features), or (N, C, H, W) with C*H*W == in_features
    (a pooled feature map, flattened implicitly in NCHW order); ``y`` is
    (N, out_features). The computation is ``conv2d`` with the weight viewed
    as (out_features, C, H, W): one filter position covering the input.
    ``relu``, ``weight_init`` (std of a zero-mean normal, or ``"glorot"``),
    ``bias_init`` and ``input_grad`` as in :class:`Conv2d`.
    """

    def __init__(self, in_features, out_features, bias=True, *, relu=False, weight_init=0.01,
                 bias_init=0.0, input_grad=True, dtype="float32", device="emu:0", rng=None,
                 materialize=True):
        super().__init__(dtype, device)
        self.in_features = check_int(in_features, "in_features")
        self.out_features = check_int(out_features, "out_features")
        self.bias = check_bool(bias, "bias")
        self.relu = check_bool(relu, "relu")
        self.weight_init = check_weight_init(weight_init, "weight_init")
        self.bias_init = check_real(bias_init, "bias_init")
        self.input_grad = check_bool(input_grad, "input_grad")
        self._x = None
        if check_bool(materialize, "materialize"):
            self.reset_parameters(rng)

    def parameter_shapes(self):
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def reset_parameters(self, rng=None):
        shape = (self.out_features, self.in_features)
        # Glorot's fans of a dense layer are just its input and output widths.
        values = {"weight": init_values(make_rng(rng), shape, self.weight_init,
                                        fan_in=self.in_features, fan_out=self.out_features)}
        if self.bias:
            values["bias"] = np.full(self.out_features, self.bias_init)
        self._set_parameters(values)
        return self

    def output_shape(self, input_shape):
        shape = check_shape(input_shape, "input_shape", ndim=(2, 4))
        self._features(shape, "input_shape")
        return (shape[0], self.out_features)

    def _features(self, shape, name):
        features = int(np.prod(shape[1:]))
        if features != self.in_features:
            raise ValueError(
                f"{name}: expected {self.in_features} features per sample, got shape {tuple(shape)} "
                f"({features} features)"
            )

    def _as_nchw(self, shape):
        """The (N, C, H, W) view of an input shape: 2-D inputs are 1x1 maps."""
        return tuple(shape) if len(shape) == 4 else (shape[0], shape[1], 1, 1)

    def _conv_weight(self, store, x4_shape):
        return store["weight"].reshape((self.out_features,) + tuple(x4_shape[1:]))

    def forward(self, x):
        check_input(x, "x", ndim=(2, 4))
        self._features(x.shape, "x")
        self._require_materialized()
        x4 = x.reshape(self._as_nchw(x.shape))
        y = self._buffer_like("y", x, (x.shape[0], self.out_features, 1, 1))
        conv2d(x4, self._conv_weight(self.params, x4.shape), self.params.get("bias"),
               relu=self.relu, out=y)
        self._x = x
        return y.reshape(x.shape[0], self.out_features)

    def backward(self, dy):
        """Returns dx shaped like the forward input (None when ``input_grad``
        is False); writes ``grads``."""
        if self._x is None:
            raise RuntimeError("Linear.backward: call forward first")
        check_input(dy, "dy", ndim=2)
        x = self._x
        if tuple(dy.shape) != (x.shape[0], self.out_features):
            raise ValueError(
                f"dy: expected shape {(x.shape[0], self.out_features)}, got {tuple(dy.shape)}"
            )
        x4 = x.reshape(self._as_nchw(x.shape))
        dy4 = dy.reshape(dy.shape + (1, 1))
        w_shape = (self.out_features,) + tuple(x4.shape[1:])
        conv2d_wgrad(x4, dy4, w_shape, with_bias=self.bias,
                     out=self._conv_weight(self.grads, x4.shape), out_bias=self.grads.get("bias"))
        if not self.input_grad:
            return None
        dx = self._buffer_like("dx", x4)
        conv2d_dgrad(dy4, self._conv_weight(self.params, x4.shape), x4.shape, out=dx)
        return dx.reshape(x.shape)

    def as_conv2d(self, input_hw):
        """The equivalent :class:`Conv2d` for inputs of spatial size
        ``input_hw`` (an int or (h, w)): in_features // (h*w) channels, an
        h x w filter. It shares this layer's weight, bias and gradient
        memory (views), so training either trains both. Slid over a larger
        input it evaluates the classifier densely (VGG, section 3.2)."""
        h, w = check_pair(input_hw, "input_hw", minimum=1)
        if self.in_features % (h * w):
            raise ValueError(
                f"input_hw: {h}x{w} does not divide in_features={self.in_features} into channels"
            )
        self._require_materialized()
        channels = self.in_features // (h * w)
        conv = Conv2d(channels, self.out_features, (h, w), bias=self.bias, relu=self.relu,
                      weight_init=self.weight_init, bias_init=self.bias_init,
                      input_grad=self.input_grad, dtype=self.dtype, device=self.device,
                      materialize=False)
        shape4 = (1, channels, h, w)
        for mine, theirs in ((self.params, conv.params), (self.grads, conv.grads)):
            theirs["weight"] = self._conv_weight(mine, shape4)
            if self.bias:
                theirs["bias"] = mine["bias"]
        conv.training = self.training
        return conv

    def to(self, device):
        self._x = None
        return super().to(device)

    def extra_repr(self):
        rest = args_repr(bias=(self.bias, True), relu=(self.relu, False))
        return f"{self.in_features}, {self.out_features}" + (", " + rest if rest else "")
