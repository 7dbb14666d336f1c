"""Dropout, forward and backward, with a counter-based generator (kernels:
csrc/kernels/dropout.cuh, csrc/kernels/philox.cuh)."""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from deepconv.backend import is_array
from deepconv.ops import _validate as check

SCALE_AT = ("train", "test")
_UINT64_LIMIT = 2**64


def dropout(x, p=0.5, seed=0, step=0, training=True, scale_at="train", out=None, *,
            block_size=None):
    """Dropout: returns ``y = x * m`` (the mask itself is never stored).

    In training, each element is kept with probability ``1 - p`` and zeroed
    otherwise. The decision for element ``i`` (of the flattened array) comes
    from Philox4x32-10 keyed by ``seed`` with counter ``(i // 4, step)``: the
    same ``(seed, step)`` gives the same mask on every device (GPU or
    emulator) and for any launch configuration, and
    :func:`dropout_backward` regenerates it. Use a new ``step`` (e.g. the
    iteration number) for every batch, and a different ``seed`` for every
    dropout layer.

    ``scale_at`` picks where the 1 - p expectation is restored:

    - ``"train"`` (default, inverted dropout, as PyTorch): kept elements are
      multiplied by ``1 / (1 - p)`` in training; evaluation is the identity.
    - ``"test"`` (AlexNet, Krizhevsky et al. 2012): no scaling in training;
      evaluation multiplies every element by ``1 - p`` (0.5 for p = 0.5).

    ``training=False`` is evaluation (no element dropped). NaN and inf stay
    visible: a dropped NaN gives NaN (``NaN * 0``), as in PyTorch and Caffe.
    ``x``: float32/float64, C-contiguous, any shape. ``p``: 0 <= p < 1.
    ``seed``, ``step``: ints in [0, 2**64). ``out``: like ``x``; ``out=x``
    computes in place. ``block_size``: threads per block of the launch
    (None: the default; a multiple of 32 up to 1024), for tests and tuning;
    the result never depends on it.
    """
    check.float_array(x, "x")
    return _apply(x, "x", p, seed, step, training, scale_at, out, block_size)


def dropout_backward(dy, p=0.5, seed=0, step=0, training=True, scale_at="train", out=None, *,
                     block_size=None):
    """``dx = dy * m`` with the mask of the forward call that had the same
    ``p``, ``seed``, ``step``, ``training`` and ``scale_at`` (regenerated, not
    stored). ``out=dy`` computes in place."""
    check.float_array(dy, "dy")
    return _apply(dy, "dy", p, seed, step, training, scale_at, out, block_size)


def philox4x32_10(counters, keys):
    """Philox4x32-10 as the kernels compute it, for known-answer tests:
    ``out[i] = philox(counters[i], keys[i])``. ``counters``: uint32 (n, 4);
    ``keys``: uint32 (n, 2), both C-contiguous on one device. Returns uint32
    (n, 4) on that device."""
    for name, arr, words in (("counters", counters, 4), ("keys", keys, 2)):
        if not is_array(arr):
            raise TypeError(f"{name}: expected a numpy.ndarray or cupy.ndarray, got {type(arr).__name__}")
        if arr.dtype != np.uint32:
            raise TypeError(f"{name}: expected dtype uint32, got {arr.dtype}")
        if arr.ndim != 2 or arr.shape[1] != words:
            raise ValueError(f"{name}: expected shape (n, {words}), got {tuple(arr.shape)}")
        if not arr.flags.c_contiguous:
            raise ValueError(f"{name}: expected a C-contiguous array")
    if counters.shape[0] != keys.shape[0]:
        raise ValueError(
            f"keys: expected one key per counter ({counters.shape[0]}), got {keys.shape[0]}"
        )
    dev, be = check.device_and_backend(counters=counters, keys=keys)
    out = be.empty(counters.shape, np.uint32, dev)
    if counters.shape[0]:
        with be.activate(dev):
            be.module.philox4x32_10(
                be.pointer(counters), be.pointer(keys), be.pointer(out), counters.shape[0],
                be.stream_handle(dev),
            )
    return out


def _apply(x, name, p, seed, step, training, scale_at, out, block_size):
    p = _probability(p)
    seed = _uint64(seed, "seed")
    step = _uint64(step, "step")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training: expected a bool, got {type(training).__name__}")
    if scale_at not in SCALE_AT:
        raise ValueError(f"scale_at: expected 'train' or 'test', got {scale_at!r}")
    threads = _block_size(block_size)
    if out is not None:
        check.output(out, "out", x, name)
    dev, be = check.device_and_backend(**{name: x, "out": out})
    if out is None:
        out = be.empty(x.shape, x.dtype, dev)
    else:
        check.in_place_or_disjoint(out, "out", x, name, be)

    if training:
        masked, keep_scale = True, (1.0 / (1.0 - p) if scale_at == "train" else 1.0)
    else:
        masked, keep_scale = False, (1.0 if scale_at == "train" else 1.0 - p)
    if x.size:
        with be.activate(dev):
            be.module.dropout_apply(
                be.pointer(x), be.pointer(out), x.size, seed, step, p, masked, keep_scale,
                x.dtype.name, threads, be.stream_handle(dev),
            )
    return out


def _probability(p) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"p: expected a float, got {type(p).__name__}")
    p = float(p)
    if not (math.isfinite(p) and 0.0 <= p < 1.0):
        raise ValueError(f"p: expected a drop probability in [0, 1), got {p}")
    return p


def _uint64(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}") from None
    if not 0 <= value < _UINT64_LIMIT:
        raise ValueError(f"{name}: expected an int in [0, 2**64), got {value}")
    return value


def _block_size(block_size) -> int:
    if block_size is None:
        return 0
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral):
        raise TypeError(f"block_size: expected an int, got {type(block_size).__name__}")
    block_size = int(block_size)
    if not (32 <= block_size <= 1024 and block_size % 32 == 0):
        raise ValueError(f"block_size: expected a multiple of 32 in [32, 1024], got {block_size}")
    return block_size
