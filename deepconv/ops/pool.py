"""Max pooling, forward and backward (kernels: csrc/kernels/pool.cuh)."""

from __future__ import annotations

import numbers

from deepconv.ops import _validate as check


def pool_output_size(size, kernel, stride, padding, ceil_mode=False):
    """Output length of one pooled dimension of input length ``size``.

    ``floor((size + 2*padding - kernel) / stride) + 1``; with ``ceil_mode``
    the division rounds up, as in Caffe, and the last window is then dropped
    if it would start in the right padding, as in PyTorch (it must start
    inside the input or the left padding).
    """
    span = size + 2 * padding - kernel
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
    else:
        out = span // stride + 1
    return out


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, out=None):
    """2-D max pooling of ``x`` (N, C, H, W); returns y (N, C, P, Q).

    ``kernel_size``, ``stride`` (default: ``kernel_size``) and ``padding``
    are an int or an (h, w) pair. Any window, stride and padding, including
    overlapping windows (AlexNet's 3x3 stride 2) and VGG's 2x2 stride 2.
    ``padding`` is at most half the window (as in PyTorch) and counts as
    -inf: it is never the maximum. Output size, per dimension: see
    :func:`pool_output_size` (floor, or ``ceil_mode=True`` as Caffe / PyTorch).

    Ties: the first maximum in row-major window order wins (the same rule
    :func:`max_pool2d_backward` routes gradients by). A window holding NaN
    outputs NaN. ``x``: float32 or float64, C-contiguous, 4-D, H and W >= 1;
    ``out``: (N, C, P, Q), same dtype and device, not sharing memory with x.
    """
    check.float_array(x, "x")
    pool = _PoolShape(x, kernel_size, stride, padding, ceil_mode)
    if out is not None:
        check.nchw_output(out, "out", pool.output_shape, x.dtype)
    dev, be = check.device_and_backend(x=x, out=out)
    if out is None:
        out = be.empty(pool.output_shape, x.dtype, dev)
    elif check.overlaps(out, x, be):
        raise ValueError("out: shares memory with x; pass a separate array")
    if out.size:
        with be.activate(dev):
            be.module.max_pool2d_fprop(
                be.pointer(x), be.pointer(out), *pool.module_args(), x.dtype.name,
                be.stream_handle(dev),
            )
    return out


def max_pool2d_backward(x, y, dy, kernel_size, stride=None, padding=0, ceil_mode=False, out=None):
    """Gradient of :func:`max_pool2d` with respect to its input; returns dx.

    ``x`` is the forward input, ``y = max_pool2d(x, ...)`` its output (the
    arg-max of each window is recomputed from x and y, with the forward tie
    rule: first maximum in row-major window order), ``dy`` the gradient of y.
    Each element of dx is the sum of dy over the windows that chose it, in a
    fixed order (deterministic with overlapping windows), and 0 where no
    window chose it. The pooling arguments are those of the forward call.
    ``out`` (like x) may not share memory with x, y or dy.
    """
    check.float_array(x, "x")
    pool = _PoolShape(x, kernel_size, stride, padding, ceil_mode)
    check.nchw_input(y, "y", pool.output_shape, x.dtype, "max_pool2d(x)")
    check.nchw_input(dy, "dy", pool.output_shape, x.dtype, "y")
    dev, be, out = check.gradient_output(out, x, y, dy)
    if out.size:
        with be.activate(dev):
            be.module.max_pool2d_bprop(
                be.pointer(x), be.pointer(y), be.pointer(dy), be.pointer(out),
                *pool.module_args(), x.dtype.name, be.stream_handle(dev),
            )
    return out


class _PoolShape:
    """The validated pooling problem of one call."""

    def __init__(self, x, kernel_size, stride, padding, ceil_mode):
        check.nchw(x, "x")
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"x: expected H and W >= 1, got shape {tuple(x.shape)}")
        self.kernel = _pair(kernel_size, "kernel_size", minimum=1)
        self.stride = self.kernel if stride is None else _pair(stride, "stride", minimum=1)
        self.padding = _pair(padding, "padding", minimum=0)
        if not isinstance(ceil_mode, bool):
            raise TypeError(f"ceil_mode: expected a bool, got {type(ceil_mode).__name__}")
        for dim, axis in (("height", 0), ("width", 1)):
            k, p, size = self.kernel[axis], self.padding[axis], x.shape[2 + axis]
            if 2 * p > k:
                raise ValueError(
                    f"padding: expected at most half the kernel size, got padding {self.padding} "
                    f"for kernel_size {self.kernel} ({dim})"
                )
            if k > size + 2 * p:
                raise ValueError(
                    f"kernel_size: the window {self.kernel} is larger than the padded input "
                    f"({dim} {size} + 2 * {p})"
                )
        self.input_shape = tuple(int(d) for d in x.shape)
        self.output_size = tuple(
            pool_output_size(x.shape[2 + a], self.kernel[a], self.stride[a], self.padding[a],
                             ceil_mode)
            for a in (0, 1)
        )
        self.output_shape = self.input_shape[:2] + self.output_size

    def module_args(self):
        return self.input_shape, self.output_size, self.kernel, self.stride, self.padding


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= ``minimum``."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(_is_int(v) for v in items):
        raise TypeError(f"{name}: expected an int or a pair of ints (h, w), got {value!r}")
    items = tuple(int(v) for v in items)
    if min(items) < minimum:
        raise ValueError(f"{name}: expected values >= {minimum}, got {value!r}")
    return items


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


# 4-D NCHW checks, shared with deepconv.ops.lrn.
