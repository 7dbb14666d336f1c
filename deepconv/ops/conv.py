"""2-D convolution: fprop, dgrad, wgrad (kernels: csrc/kernels/conv.cuh).

Layout NCHW; filters ``w`` are ``(K, C // groups, R, S)``; zero padding,
dilation 1. Two algorithms, on one GEMM main loop:

- ``"implicit_gemm"``: any shape, nothing unfolded into an im2col buffer; a
  3x3 stride-1 pad-1 variant and a fully connected variant (filter covering
  the whole input) are chosen automatically.
- ``"winograd"``: Winograd minimal filtering, F(4x4,3x3) or F(2x2,3x3) (also
  named directly: ``"winograd_4x4"``, ``"winograd_2x2"``), for 3x3 filters,
  stride 1, padding <= 2. Fewer multiplications (36 instead of 144 per 4x4
  output tile and channel pair), slightly larger rounding error (README,
  "3x3 convolution algorithms"), a workspace for the transformed operands.

``algorithm="auto"`` (the default) picks by a rule measured per build
(csrc/ops/conv_winograd.cu); ``set_conv_algorithm`` changes the process-wide
default (like ``torch.backends.cudnn``'s switches), and ``conv2d_variant``
says which kernel a call would run. All results are deterministic: no
floating-point atomics, fixed summation order, so two runs on one device give
bitwise identical outputs and gradients.

Scratch memory for split reductions is allocated here, on the arrays'
device, in the size the launcher asks for (Python owns memory).
"""

from __future__ import annotations

import numbers

import numpy as np

from deepconv.backend.device import backend_for
from deepconv.backend.device import device as make_device
from deepconv.backend.scratch import scratch
from deepconv.ops import _validate as check
from deepconv.ops._conv_dgrad_taps import dgrad_by_taps, needs_taps

__all__ = ["ALGORITHMS", "conv2d", "conv2d_dgrad", "conv2d_wgrad", "conv2d_output_shape",
           "conv2d_variant", "get_conv_algorithm", "set_conv_algorithm"]

# The values of every `algorithm` argument (None: the process-wide default).
ALGORITHMS = ("auto", "implicit_gemm", "winograd", "winograd_4x4", "winograd_2x2")
_default_algorithm = "auto"


def set_conv_algorithm(algorithm):
    """Sets the algorithm every convolution uses when its ``algorithm``
    argument is None (the default): one of ``ALGORITHMS``. Returns the
    previous setting, so a caller can restore it."""
    global _default_algorithm
    previous = _default_algorithm
    _default_algorithm = _check_algorithm(algorithm)
    return previous


def get_conv_algorithm():
    """The process-wide default algorithm (``"auto"`` unless set)."""
    return _default_algorithm


def conv2d_variant(pass_name, x_shape, w_shape, stride=1, padding=0, groups=1, algorithm=None,
                   dtype="float32", device=None):
    """The kernel variant that ``conv2d`` (``pass_name="fprop"``),
    ``conv2d_dgrad`` ("dgrad") or ``conv2d_wgrad`` ("wgrad") runs for these
    shapes: e.g. ``"implicit_gemm_3x3"``, ``"winograd_4x4"``. ``device``:
    where it would run (default: the emulator)."""
    if pass_name not in ("fprop", "dgrad", "wgrad"):
        raise ValueError(f"pass_name: expected 'fprop', 'dgrad' or 'wgrad', got {pass_name!r}")
    x_shape = _shape4(x_shape, "x_shape")
    w_shape = _shape4(w_shape, "w_shape")
    stride, padding, groups = _geometry(stride, padding, groups)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    y_shape = _conv_shapes(x_shape, w_shape, stride, padding, groups, "x_shape", "w_shape")
    algorithm = _resolve_algorithm(algorithm, w_shape, stride, padding)
    dev = make_device(device if device is not None else "emu:0", arg="device")
    be = backend_for(dev)
    params = _params(x_shape, w_shape, y_shape, stride, padding, groups)
    return getattr(be.module, f"conv2d_{pass_name}_variant")(params, dtype, algorithm)


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, groups=1):
    """``(N, K, P, Q)`` of ``conv2d(x, w, stride=stride, padding=padding,
    groups=groups)``, with ``P = (H + 2 pad_h - R) // stride_h + 1`` (and
    likewise Q).

    Raises ValueError where conv2d would: the filter larger than the padded
    input, channels that do not match (C / groups per filter), sizes past
    the kernels' 32-bit limits.
    """
    x_shape = _shape4(x_shape, "x_shape")
    w_shape = _shape4(w_shape, "w_shape")
    stride, padding, groups = _geometry(stride, padding, groups)
    return _conv_shapes(x_shape, w_shape, stride, padding, groups, "x_shape", "w_shape")


def conv2d(x, w, b=None, stride=1, padding=0, groups=1, relu=False, out=None, algorithm=None):
    """``y = conv(x, w) + b``, then ``max(y, 0)`` if ``relu``; returns y.

    ``x``: ``(N, C, H, W)``; ``w``: ``(K, C // groups, R, S)``; ``b``: ``(K,)``
    or None; ``stride``, ``padding``: int or ``(h, w)``; ``groups`` divides C
    and K (AlexNet's two-way split is ``groups=2``). ``y``: ``(N, K, P, Q)``,
    written into ``out`` when given (which must not overlap an input). All
    arrays: float32 or float64 of one dtype, C-contiguous, on one device.
    ``algorithm``: one of ``ALGORITHMS`` or None (``get_conv_algorithm()``);
    ValueError when ``"winograd"`` cannot run the problem.
    """
    check.float_array(x, "x")
    check.float_array(w, "w")
    stride, padding, groups = _geometry(stride, padding, groups)
    _check_same_dtype(w, "w", x, "x")
    y_shape = _conv_shapes(x.shape, w.shape, stride, padding, groups, "x", "w")
    if b is not None:
        check.float_array(b, "b")
        _check_same_dtype(b, "b", x, "x")
        if b.shape != (w.shape[0],):
            raise ValueError(f"b: expected shape ({w.shape[0]},) (one per filter), got {b.shape}")
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"relu: expected a bool, got {type(relu).__name__}")
    if out is not None:
        _check_out(out, "out", y_shape, x, "x")
    algorithm = _resolve_algorithm(algorithm, w.shape, stride, padding)
    dev, be = check.device_and_backend(x=x, w=w, b=b, out=out)
    if out is None:
        out = be.empty(y_shape, x.dtype, dev)
    else:
        _check_disjoint(out, "out", be, x=x, w=w, b=b)
    params = _params(x.shape, w.shape, y_shape, stride, padding, groups)
    if out.size == 0:
        return out
    dtype = x.dtype.name
    with be.activate(dev):
        nbytes = be.module.conv2d_fprop_workspace_bytes(params, dtype, algorithm)
        _ws, ws, ws_bytes = _workspace(be, dev, nbytes)
        be.module.conv2d_fprop(
            params,
            be.pointer(x),
            be.pointer(w),
            0 if b is None else be.pointer(b),
            be.pointer(out),
            bool(relu),
            ws,
            ws_bytes,
            dtype,
            be.stream_handle(dev),
            algorithm,
        )
    return out


def conv2d_dgrad(dy, w, x_shape, stride=1, padding=0, groups=1, out=None, algorithm=None):
    """Gradient of ``conv2d`` with respect to its input: returns ``dx`` with
    shape ``x_shape``, from ``dy`` ``(N, K, P, Q)`` and the filters ``w``.

    ``stride``, ``padding`` and ``groups`` are those of the forward call;
    ``out`` (shape ``x_shape``) receives dx when given. ``algorithm``: as
    ``conv2d``'s. Filters holding NaN or Inf give PyTorch's dx (a tap on
    zero padding adds nothing), through a slower tap-by-tap path
    (``_conv_dgrad_taps``), whatever the algorithm.
    """
    check.float_array(dy, "dy")
    check.float_array(w, "w")
    x_shape = _shape4(x_shape, "x_shape")
    stride, padding, groups = _geometry(stride, padding, groups)
    _check_same_dtype(w, "w", dy, "dy")
    y_shape = _conv_shapes(x_shape, w.shape, stride, padding, groups, "x_shape", "w")
    _check_shape(dy, "dy", y_shape)
    if out is not None:
        _check_out(out, "out", x_shape, dy, "dy")
    algorithm = _resolve_algorithm(algorithm, w.shape, stride, padding)
    dev, be = check.device_and_backend(dy=dy, w=w, out=out)
    if out is None:
        out = be.empty(x_shape, dy.dtype, dev)
    else:
        _check_disjoint(out, "out", be, dy=dy, w=w)
    params = _params(x_shape, w.shape, y_shape, stride, padding, groups)
    if out.size == 0:
        return out
    if needs_taps(x_shape, w, padding, be, dev):  # NaN / Inf filters: PyTorch's dx
        return dgrad_by_taps(dy, w, out, stride, padding, groups, be, dev)
    dtype = dy.dtype.name
    with be.activate(dev):
        nbytes = be.module.conv2d_dgrad_workspace_bytes(params, dtype, algorithm)
        _ws, ws, ws_bytes = _workspace(be, dev, nbytes)
        be.module.conv2d_dgrad(
            params, be.pointer(dy), be.pointer(w), be.pointer(out), ws, ws_bytes, dtype,
            be.stream_handle(dev), algorithm,
        )
    return out


def conv2d_wgrad(x, dy, w_shape, stride=1, padding=0, groups=1, with_bias=True, out=None,
                 out_bias=None, algorithm=None):
    """Gradients of ``conv2d`` with respect to its filters and bias: returns
    ``(dw, db)``, ``dw`` with shape ``w_shape`` and ``db`` ``(K,)``, or
    ``(dw, None)`` when ``with_bias`` is False.

    ``x`` is the forward input, ``dy`` ``(N, K, P, Q)`` the output gradient.
    The sums over the batch and the output pixels run in a fixed order, so
    two calls give bitwise identical gradients. ``out`` / ``out_bias``
    receive dw / db when given (both are overwritten, not accumulated into).
    ``algorithm``: as ``conv2d``'s.
    """
    check.float_array(x, "x")
    check.float_array(dy, "dy")
    w_shape = _shape4(w_shape, "w_shape")
    stride, padding, groups = _geometry(stride, padding, groups)
    _check_same_dtype(dy, "dy", x, "x")
    y_shape = _conv_shapes(x.shape, w_shape, stride, padding, groups, "x", "w_shape")
    _check_shape(dy, "dy", y_shape)
    if not isinstance(with_bias, (bool, np.bool_)):
        raise TypeError(f"with_bias: expected a bool, got {type(with_bias).__name__}")
    if out is not None:
        _check_out(out, "out", w_shape, x, "x")
    if out_bias is not None:
        if not with_bias:
            raise ValueError("out_bias: given, but with_bias is False")
        _check_out(out_bias, "out_bias", (w_shape[0],), x, "x")
    algorithm = _resolve_algorithm(algorithm, w_shape, stride, padding)
    dev, be = check.device_and_backend(x=x, dy=dy, out=out, out_bias=out_bias)
    if out is None:
        out = be.empty(w_shape, x.dtype, dev)
    else:
        _check_disjoint(out, "out", be, x=x, dy=dy, out_bias=out_bias)
    db = None
    if with_bias:
        if out_bias is None:
            db = be.empty((w_shape[0],), x.dtype, dev)
        else:
            db = out_bias
            _check_disjoint(db, "out_bias", be, x=x, dy=dy)
    params = _params(x.shape, w_shape, y_shape, stride, padding, groups)
    dtype = x.dtype.name
    with be.activate(dev):
        nbytes = be.module.conv2d_wgrad_workspace_bytes(params, dtype, algorithm)
        _ws, ws, ws_bytes = _workspace(be, dev, nbytes)
        be.module.conv2d_wgrad(
            params,
            be.pointer(x),
            be.pointer(dy),
            be.pointer(out),
            0 if db is None else be.pointer(db),
            ws,
            ws_bytes,
            dtype,
            be.stream_handle(dev),
            algorithm,
        )
    return out, db


# --- helpers -------------------------------------------------------------------


def _check_algorithm(algorithm):
    if not isinstance(algorithm, str):
        raise TypeError(f"algorithm: expected a str (one of {ALGORITHMS}), got {algorithm!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm: expected one of {ALGORITHMS}, got {algorithm!r}")
    return algorithm


def check_algorithm(algorithm, kernel_size, stride, padding):
    """``algorithm`` (one of ALGORITHMS) when it can run a convolution with
    this kernel size, stride and padding (pairs); else TypeError /
    ValueError naming the argument (for layers that check at construction)."""
    return _resolve_algorithm(algorithm, (0, 0) + tuple(kernel_size), stride, padding)


def _resolve_algorithm(algorithm, w_shape, stride, padding):
    """The algorithm a call runs with (None: the process-wide default);
    ValueError naming the reason when a Winograd one cannot run it."""
    algorithm = _default_algorithm if algorithm is None else _check_algorithm(algorithm)
    if algorithm.startswith("winograd"):
        why = []
        if tuple(w_shape[2:]) != (3, 3):
            why.append(f"the filter is {w_shape[2]}x{w_shape[3]}, not 3x3")
        if tuple(stride) != (1, 1):
            why.append(f"the stride is {tuple(stride)}, not 1")
        if max(padding) > 2:
            why.append(f"the padding {tuple(padding)} is larger than 2")
        if why:
            raise ValueError(f"algorithm: {algorithm!r} cannot run this convolution: "
                             + "; ".join(why) + " (Winograd needs a 3x3 filter, stride 1, "
                             "padding <= 2)")
    return algorithm


def _workspace(be, dev, nbytes):
    """``(array, pointer, bytes)`` of split-K scratch memory on ``dev``
    (``(None, 0, 0)`` for none), reused from call to call (backend/scratch.py).
    The caller keeps the array referenced until the launch has been queued."""
    if nbytes == 0:
        return None, 0, 0
    buf = scratch(be, dev, nbytes, "conv_workspace")
    return buf, be.pointer(buf), nbytes


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _pair(value, name, minimum):
    if _is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name}: expected an int or a pair of ints (h, w), got {value!r}")
    if min(pair) < minimum:
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name}: expected {what} values, got {value!r}")
    return pair


def _geometry(stride, padding, groups):
    stride = _pair(stride, "stride", minimum=1)
    padding = _pair(padding, "padding", minimum=0)
    if not _is_int(groups):
        raise TypeError(f"groups: expected an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups: expected a positive int, got {groups}")
    return stride, padding, int(groups)


def _shape4(shape, name):
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{name}: expected a 4-tuple of ints, got {shape!r}") from None
    if len(dims) != 4 or not all(_is_int(d) for d in dims):
        raise ValueError(f"{name}: expected 4 ints (N, C, H, W) / (K, C, R, S), got {shape!r}")
    if any(d < 0 for d in dims):
        raise ValueError(f"{name}: dimensions must be >= 0, got {dims}")
    return tuple(int(d) for d in dims)


def _output_shape(x_shape, w_shape, stride, padding, x_name, w_name):
    n, _, h, w = x_shape
    k, _, r, s = w_shape
    for dim, size, filt, pad in (("height", h, r, padding[0]), ("width", w, s, padding[1])):
        if filt > size + 2 * pad:
            raise ValueError(
                f"{w_name}: filter {dim} {filt} is larger than the padded input {dim} "
                f"{size} + 2*{pad} of {x_name}"
            )
    p = (h + 2 * padding[0] - r) // stride[0] + 1
    q = (w + 2 * padding[1] - s) // stride[1] + 1
    return (n, k, p, q)


def _conv_shapes(x_shape, w_shape, stride, padding, groups, x_name, w_name):
    """Checks x / w against each other and groups; returns y's shape."""
    if len(x_shape) != 4:
        raise ValueError(
            f"{x_name}: expected 4 dimensions (N, C, H, W), got shape {tuple(x_shape)}"
        )
    if len(w_shape) != 4:
        raise ValueError(
            f"{w_name}: expected 4 dimensions (K, C/groups, R, S), got shape {tuple(w_shape)}"
        )
    n, c, h, w = x_shape
    k, cg, r, s = w_shape
    if min(c, h, w) < 1:
        raise ValueError(f"{x_name}: C, H and W must be positive, got shape {tuple(x_shape)}")
    if min(k, cg, r, s) < 1:
        raise ValueError(f"{w_name}: all dimensions must be positive, got shape {tuple(w_shape)}")
    if c % groups:
        raise ValueError(f"groups: {groups} does not divide the {c} input channels of {x_name}")
    if k % groups:
        raise ValueError(f"groups: {groups} does not divide the {k} filters of {w_name}")
    if cg != c // groups:
        raise ValueError(
            f"{w_name}: expected {c // groups} input channels per filter "
            f"(C={c} / groups={groups}), got shape {tuple(w_shape)}"
        )
    y_shape = _output_shape(x_shape, w_shape, stride, padding, x_name, w_name)
    check.conv_limits(x_shape, w_shape, y_shape, stride, padding, groups, x_name, w_name)
    return y_shape


def _check_same_dtype(arr, name, ref, ref_name):
    if arr.dtype != ref.dtype:
        raise TypeError(f"{name}: expected the dtype of {ref_name} ({ref.dtype}), got {arr.dtype}")


def _check_shape(arr, name, shape):
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(arr.shape)}")


def _check_out(out, name, shape, ref, ref_name):
    check.float_array(out, name)
    _check_shape(out, name, shape)
    _check_same_dtype(out, name, ref, ref_name)
    check.writeable(out, name)


def _check_disjoint(out, name, be, **inputs):
    for other, arr in inputs.items():
        if arr is not None and check.overlaps(out, arr, be):
            raise ValueError(f"{name}: shares memory with {other}; pass a separate array")


def _params(x_shape, w_shape, y_shape, stride, padding, groups):
    n, c, h, w = x_shape
    k, _, r, s = w_shape
    return (n, c, h, w, k, r, s, y_shape[2], y_shape[3], padding[0], padding[1], stride[0],
            stride[1], groups)
