"""Local response normalisation across channels, forward and backward
(kernels: csrc/kernels/lrn.cuh)."""

from __future__ import annotations

import math
import numbers

from deepconv.ops import _validate as check

ALPHA_CONVENTIONS = ("paper", "per_size")


def lrn(x, size=5, alpha=1e-4, beta=0.75, k=2.0, alpha_convention="paper", out=None):
    """Local response normalisation across channels (AlexNet, section 3.3).

    For ``x`` (N, C, H, W), at every (n, h, w)::

        s_c = k + alpha_eff * sum_{c' = max(0, c - size//2)}^{min(C - 1, c + size//2)} x_{c'}^2
        y_c = x_c / s_c ** beta

    ``alpha_convention`` says how ``alpha`` becomes ``alpha_eff``:

    - ``"paper"`` (default): ``alpha_eff = alpha``, the formula as Krizhevsky
      et al. write it; the defaults are AlexNet's (size 5, alpha 1e-4,
      beta 0.75, k 2).
    - ``"per_size"``: ``alpha_eff = alpha / size``, as Caffe, cuda-convnet and
      PyTorch do. Caffe's ``LRN(local_size=n, alpha=a, beta=b, k=k)`` and
      PyTorch's ``local_response_norm(x, size=n, alpha=a, beta=b, k=k)`` are
      ``lrn(x, size=n, alpha=a, beta=b, k=k, alpha_convention="per_size")``.

    ``size`` is odd and >= 1 (the window is centred); it may exceed C (the
    window is clipped to the channels that exist). ``alpha`` finite >= 0,
    ``beta`` finite, ``k`` finite > 0 (so ``s_c`` > 0). NaN in x gives NaN
    in the outputs whose windows hold it. ``x``: float32 or float64,
    C-contiguous, 4-D; ``out``: like x, not sharing memory with x.
    """
    check.float_array(x, "x")
    check.nchw(x, "x")
    hyper = _hyperparameters(size, alpha, beta, k, alpha_convention)
    if out is not None:
        check.output(out, "out", x, "x")
    dev, be = check.device_and_backend(x=x, out=out)
    if out is None:
        out = be.empty(x.shape, x.dtype, dev)
    elif check.overlaps(out, x, be):
        raise ValueError("out: shares memory with x; pass a separate array (lrn cannot run in place)")
    if x.size:
        with be.activate(dev):
            be.module.lrn_fprop(
                be.pointer(x), be.pointer(out), tuple(x.shape), *_module_args(hyper, x.shape[1]),
                x.dtype.name, be.stream_handle(dev),
            )
    return out


def lrn_backward(x, y, dy, size=5, alpha=1e-4, beta=0.75, k=2.0, alpha_convention="paper",
                 out=None):
    """Gradient of :func:`lrn` with respect to its input; returns dx.

    ``x`` is the forward input, ``y = lrn(x, ...)`` its output, ``dy`` the
    gradient of y; the other arguments are those of the forward call. Exact
    (the scale of every channel depends on its neighbours)::

        dx_c = dy_c * s_c**-beta
               - 2 * alpha_eff * beta * x_c * sum_{c' in window(c)} dy_{c'} * y_{c'} / s_{c'}

    ``out`` (like x) may not share memory with x, y or dy.
    """
    check.float_array(x, "x")
    check.nchw(x, "x")
    check.nchw_input(y, "y", x.shape, x.dtype, "x")
    check.nchw_input(dy, "dy", x.shape, x.dtype, "x")
    hyper = _hyperparameters(size, alpha, beta, k, alpha_convention)
    dev, be, out = check.gradient_output(out, x, y, dy)
    if x.size:
        with be.activate(dev):
            be.module.lrn_bprop(
                be.pointer(x), be.pointer(y), be.pointer(dy), be.pointer(out), tuple(x.shape),
                *_module_args(hyper, x.shape[1]), x.dtype.name, be.stream_handle(dev),
            )
    return out


def _hyperparameters(size, alpha, beta, k, alpha_convention):
    """(size, alpha_eff, beta, k) as the module takes them, validated."""
    if not isinstance(size, numbers.Integral) or isinstance(size, bool):
        raise TypeError(f"size: expected an int, got {type(size).__name__}")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size: expected an odd integer >= 1, got {size}")
    alpha = _real(alpha, "alpha")
    beta = _real(beta, "beta")
    k = _real(k, "k")
    if alpha < 0:
        raise ValueError(f"alpha: expected a finite value >= 0, got {alpha}")
    if k <= 0:
        raise ValueError(f"k: expected a finite value > 0, got {k}")
    if alpha_convention not in ALPHA_CONVENTIONS:
        raise ValueError(
            f"alpha_convention: expected 'paper' (alpha as written in the AlexNet paper) or "
            f"'per_size' (alpha / size, as Caffe and PyTorch), got {alpha_convention!r}"
        )
    alpha_eff = alpha / size if alpha_convention == "per_size" else alpha
    return int(size), alpha_eff, beta, k


def _module_args(hyper, channels):
    """The window the kernel needs: one wider than 2C + 1 covers the same
    channels, so clip it (the module takes a C int)."""
    size, alpha_eff, beta, k = hyper
    return min(size, 2 * channels + 1), alpha_eff, beta, k


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite value, got {value}")
    return value
