"""Argument checks shared by the ops. Each raises TypeError (wrong kind of
object or dtype) or ValueError (wrong shape, layout, device, value) with a
message that starts with the argument's name and says what was expected.

Nothing here launches a kernel: ops validate every argument first, so a bad
call never leaves half its outputs written.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from deepconv.backend import backend_for, check_same_device, is_array

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(arr, name: str):
    """``arr`` must be a C-contiguous float32/float64 numpy or cupy array."""
    if not is_array(arr):
        raise TypeError(
            f"{name}: expected a numpy.ndarray (emulated device) or a cupy.ndarray "
            f"(CUDA device), got {type(arr).__name__}"
        )
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {arr.dtype}")
    if not arr.flags.c_contiguous:
        raise ValueError(
            f"{name}: expected a C-contiguous array, got strides {arr.strides} for shape "
            f"{arr.shape}; make one with deepconv.asarray(...)"
        )
    return arr


def writeable(arr, name: str):
    """``arr`` will be written: refuse a read-only numpy array (cupy arrays
    have no read-only flag)."""
    if not getattr(arr.flags, "writeable", True):
        raise ValueError(f"{name}: the array is read-only, but this op writes its result into it")
    return arr


def like(arr, name: str, ref, ref_name: str):
    """``arr`` must have the shape and dtype of ``ref``."""
    if arr.shape != ref.shape:
        raise ValueError(
            f"{name}: expected the shape of {ref_name} {tuple(ref.shape)}, got {tuple(arr.shape)}"
        )
    if arr.dtype != ref.dtype:
        raise TypeError(f"{name}: expected the dtype of {ref_name} ({ref.dtype}), got {arr.dtype}")
    return arr


def output(out, name: str, ref, ref_name: str):
    """An ``out=`` argument: a writeable float array shaped like ``ref``."""
    float_array(out, name)
    like(out, name, ref, ref_name)
    return writeable(out, name)


def span(arr, be) -> tuple[int, int]:
    """The bytes [start, end) of a C-contiguous array."""
    # C-contiguous, so the elements occupy exactly [start, start + nbytes).
    start = be.pointer(arr)
    return start, start + arr.nbytes


def overlaps(a, b, be) -> bool:
    """Whether two C-contiguous arrays on one device share any byte."""
    if a.nbytes == 0 or b.nbytes == 0:
        return False
    a0, a1 = span(a, be)
    b0, b1 = span(b, be)
    return a0 < b1 and b0 < a1


def same_buffer(a, b, be) -> bool:
    """Whether two C-contiguous arrays are exactly the same elements."""
    return be.pointer(a) == be.pointer(b) and a.nbytes == b.nbytes


def in_place_or_disjoint(out, out_name: str, src, src_name: str, be):
    """``out`` may be ``src`` itself (in place) or separate from it, but not
    a shifted or partial view of it, which would race between threads."""
    if overlaps(out, src, be) and not same_buffer(out, src, be):
        raise ValueError(
            f"{out_name}: overlaps {src_name} without being the same array; pass "
            f"{out_name}={src_name} for in place, or a separate array"
        )


def disjoint(named_arrays, be):
    """No two of ``named_arrays`` (name -> array) may share memory."""
    items = [(name, a) for name, a in named_arrays if a.nbytes]
    spans = sorted((span(a, be), name) for name, a in items)
    for (prev_span, prev_name), (this_span, name) in zip(spans, spans[1:]):
        if this_span[0] < prev_span[1]:
            raise ValueError(
                f"{name} and {prev_name} share memory: each must be a separate array "
                "(the same parameter passed twice would be updated twice)"
            )


def array_list(seq, name: str) -> list:
    """A list or tuple of arrays (not one array, which would iterate rows)."""
    if is_array(seq) or not isinstance(seq, (list, tuple)):
        raise TypeError(f"{name}: expected a list of arrays, got {type(seq).__name__}")
    return list(seq)


def hyperparameter(value, name: str, count: int) -> list[float]:
    """A finite, non-negative float, or a sequence of ``count`` of them (one
    per tensor); returned as a list of ``count`` floats."""
    if isinstance(value, (list, tuple)):
        values = list(value)
        if len(values) != count:
            raise ValueError(
                f"{name}: expected one value per parameter tensor ({count}), got {len(values)}"
            )
        return [_nonnegative_real(v, f"{name}[{i}]") for i, v in enumerate(values)]
    return [_nonnegative_real(value, name)] * count


def _nonnegative_real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name}: expected a float (or a list of floats, one per tensor), "
            f"got {type(value).__name__}"
        )
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite value >= 0, got {value}")
    return value


def device_and_backend(**arrays):
    """The common device of ``arrays`` and the backend that serves it."""
    dev = check_same_device(**arrays)
    return dev, backend_for(dev)


def nchw(arr, name: str):
    """``arr`` (already a float array) must be 4-D (N, C, H, W)."""
    if arr.ndim != 4:
        raise ValueError(f"{name}: expected a 4-D (N, C, H, W) array, got shape {tuple(arr.shape)}")
    return arr


def nchw_input(arr, name: str, shape, dtype, what: str):
    """A C-contiguous float array of ``shape`` and ``dtype`` (those of ``what``)."""
    float_array(arr, name)
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name}: expected the shape of {what} {tuple(shape)}, got {tuple(arr.shape)}")
    if arr.dtype != dtype:
        raise TypeError(f"{name}: expected the dtype of x ({dtype}), got {arr.dtype}")
    return arr


def nchw_output(arr, name: str, shape, dtype):
    """An ``out=`` argument of ``shape`` and ``dtype``: C-contiguous and writeable."""
    nchw_input(arr, name, shape, dtype, "the output")
    return writeable(arr, name)


def out_disjoint(out, be, **inputs):
    """An ``out`` that is not ``None`` may share memory with none of ``inputs``."""
    for name, arr in inputs.items():
        if out is not None and overlaps(out, arr, be):
            raise ValueError(f"out: shares memory with {name}; pass a separate array")


def gradient_output(out, x, y, dy):
    """``(device, backend, dx)`` for a backward op of ``(x, y, dy)``: ``out``
    validated like ``x`` and disjoint from the three inputs, or a new array."""
    if out is not None:
        output(out, "out", x, "x")
    dev, be = device_and_backend(x=x, y=y, dy=dy, out=out)
    out_disjoint(out, be, x=x, y=y, dy=dy)
    if out is None:
        out = be.empty(x.shape, x.dtype, dev)
    return dev, be, out


# --- the convolution kernels' 32-bit limits ------------------------------------------

_LIMIT = 2**31  # csrc/kernels/conv_params.cuh, conv_check_params: 32-bit sizes
MAX_GROUPS = 65535


def conv_limits(x_shape, w_shape, y_shape, stride, padding, groups, x_name, w_name):
    """The sizes the conv kernels take (below 2^31: their int parameters and
    32-bit GEMM indices), checked before anything is allocated, so that an
    oversized argument is named instead of failing in pybind11, in the
    launcher (as ``params``) or in numpy's allocator."""
    for name, pair in (("stride", stride), ("padding", padding)):
        if max(pair) >= _LIMIT:
            raise ValueError(f"{name}: expected values below 2^31 (the kernels' 32-bit "
                             f"sizes), got {tuple(pair)}")
    if groups > MAX_GROUPS:
        raise ValueError(f"groups: expected at most {MAX_GROUPS}, got {groups} (2^31 and "
                         "beyond do not fit the kernels either)")
    for name, shape in ((x_name, x_shape), (w_name, w_shape)):
        if max(shape) >= _LIMIT:
            raise ValueError(f"{name}: every dimension must be below 2^31 (the kernels' 32-bit "
                             f"sizes), got {tuple(shape)}")
    n, _, h, w = x_shape
    k, cg, r, s = w_shape
    _, _, p, q = y_shape
    if n * h * w >= _LIMIT:
        raise ValueError(f"{x_name}: N*H*W = {n * h * w} input pixels; the kernels take fewer "
                         f"than 2^31, shape {tuple(x_shape)}")
    if max(cg, k // groups) * r * s >= _LIMIT:
        raise ValueError(f"{w_name}: (C/groups)*R*S and (K/groups)*R*S must stay below 2^31 "
                         f"(a 32-bit reduction), got shape {tuple(w_shape)}")
    if n * p * q >= _LIMIT:
        raise ValueError(f"padding: {tuple(padding)} with stride {tuple(stride)} makes an output "
                         f"of N*P*Q = {n * p * q} pixels (P, Q = {p}, {q}); the kernels take "
                         "fewer than 2^31")
