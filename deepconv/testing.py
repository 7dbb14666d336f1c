"""Test helpers for code built on deepconv (like ``numpy.testing``).

The emulator's race-check mode resumes a block's threads in reversed and
shuffled order between barriers, shuffles the block order and poisons shared
memory at block start. A kernel free of shared-memory races gives bitwise the
same result under every schedule; :func:`assert_race_free` checks exactly that.
"""

from __future__ import annotations

import contextlib

import numpy as np

from deepconv.backend import backend_for, device_of, is_array, to_numpy
from deepconv.backend.emu import _emu

__all__ = ["assert_race_free", "race_check", "numeric_gradient", "assert_gradient_close"]


@contextlib.contextmanager
def _race_mode(enabled: bool, seed: int):
    before = _emu.settings()
    _emu.set_race_check(enabled, seed)
    try:
        yield
    finally:
        _emu.set_race_check(bool(before["race_check"]), int(before.get("seed", 0)))


def race_check(seed: int = 0):
    """Context manager: emulator race-check mode on, with schedule ``seed``;
    the previous mode and seed are restored on exit."""
    return _race_mode(True, seed)


def assert_race_free(fn, *args, seeds=(1, 2, 3)):
    """Run ``fn(*args)`` in the default schedule and under race-check with
    each seed; raise AssertionError unless every run gives bitwise identical
    results.

    Each run gets fresh copies of the arrays in ``args`` (also inside lists,
    tuples and dicts), so in-place ops start from the same state. Compared
    are the return value and the arrays in ``args`` after the call. Returns
    the default-schedule results as ``{"returned": ..., "args": [...]}``.
    """
    with _race_mode(False, 0):
        reference = _run(fn, args)
    for seed in seeds:
        with race_check(seed):
            result = _run(fn, args)
        problems = _differences(reference["returned"], result["returned"], "returned")
        problems += _differences(reference["args"], result["args"], "args")
        if problems:
            raise AssertionError(
                f"{_name(fn)} is not race-free: results under race-check seed {seed} differ "
                "from the default schedule: " + "; ".join(problems)
            )
    return reference


def numeric_gradient(loss, x, eps=1e-6):
    """Central-difference gradient of the scalar ``loss()`` with respect to
    the numpy array ``x``, which ``loss`` reads (Caffe's gradient checker).

    Each element of ``x`` is nudged by +eps and -eps in turn and restored, so
    ``x`` is unchanged afterwards. Use float64 arrays and an eps around 1e-6:
    the truncation error is O(eps^2), the rounding error O(1e-16 / eps).
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError("x must be a float64 numpy array (numeric gradients need the precision)")
    grad = np.zeros_like(x)
    flat, grad_flat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous, so that nudging its elements reaches loss()")
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        up = float(loss())
        flat[i] = original - eps
        down = float(loss())
        flat[i] = original
        grad_flat[i] = (up - down) / (2 * eps)
    return grad


def assert_gradient_close(analytic, numeric, rtol=1e-5, atol=1e-7, ignore=None, name="gradient"):
    """Compare an analytic gradient with :func:`numeric_gradient`'s.

    ``ignore`` is a boolean mask of elements to skip: those whose input sits
    within eps of a kink (ReLU at 0, ties in max pooling), where the central
    difference straddles two slopes and means nothing.
    """
    analytic = np.asarray(to_numpy(analytic), dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise AssertionError(f"{name}: shape {analytic.shape} vs numeric {numeric.shape}")
    keep = np.ones(analytic.shape, bool) if ignore is None else ~np.asarray(ignore, bool)
    error = np.abs(analytic - numeric)
    bad = keep & (error > atol + rtol * np.abs(numeric))
    if np.any(bad):
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {int(keep.sum())} elements differ from central "
            f"differences, first at {first}: analytic {analytic[first]!r}, numeric "
            f"{numeric[first]!r} (rtol {rtol}, atol {atol})"
        )


def _run(fn, args):
    fresh = _copy(args)
    returned = fn(*fresh)
    return {"returned": returned, "args": list(fresh)}


def _copy(obj):
    if is_array(obj):
        dev = device_of(obj)
        be = backend_for(dev)
        out = be.empty(obj.shape, obj.dtype, dev)
        with be.activate(dev):
            out[...] = obj
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    return obj


def _differences(ref, got, path: str) -> list[str]:
    if is_array(ref) or is_array(got):
        return _array_difference(ref, got, path)
    if isinstance(ref, (list, tuple)) and isinstance(got, (list, tuple)):
        if len(ref) != len(got):
            return [f"{path}: {len(ref)} items vs {len(got)}"]
        found = []
        for i, (r, g) in enumerate(zip(ref, got)):
            found += _differences(r, g, f"{path}[{i}]")
        return found
    if isinstance(ref, dict) and isinstance(got, dict):
        if ref.keys() != got.keys():
            return [f"{path}: keys {sorted(ref)} vs {sorted(got)}"]
        found = []
        for key in ref:
            found += _differences(ref[key], got[key], f"{path}[{key!r}]")
        return found
    return [] if _same_value(ref, got) else [f"{path}: {ref!r} vs {got!r}"]


def _same_value(a, b) -> bool:
    try:
        return bool(a == b) or (a != a and b != b)  # NaN == NaN here
    except Exception:
        return a is b


def _array_difference(ref, got, path: str) -> list[str]:
    if not (is_array(ref) and is_array(got)):
        return [f"{path}: {type(ref).__name__} vs {type(got).__name__}"]
    if ref.shape != got.shape or ref.dtype != got.dtype:
        return [f"{path}: shape/dtype {ref.shape} {ref.dtype} vs {got.shape} {got.dtype}"]
    a, b = np.ascontiguousarray(to_numpy(ref)), np.ascontiguousarray(to_numpy(got))
    if a.size == 0:
        return []
    # Compare bytes, not values: NaN payloads and -0.0 must match too.
    a_bytes = a.reshape(-1).view(np.uint8).reshape(a.shape + (a.itemsize,))
    b_bytes = b.reshape(-1).view(np.uint8).reshape(b.shape + (b.itemsize,))
    differ = np.any(a_bytes != b_bytes, axis=-1)
    count = int(np.count_nonzero(differ))
    if not count:
        return []
    first = tuple(int(i) for i in np.argwhere(differ)[0]) if a.ndim else ()
    return [
        f"{path}: {count} of {a.size} elements differ, first at index {first} "
        f"(default {a[first]!r}, race-check {b[first]!r})"
    ]


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
