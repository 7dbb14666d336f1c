"""Softmax and fused softmax + cross-entropy, forward and backward (kernels:
csrc/kernels/softmax.cuh)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from deepconv.backend import is_array
from deepconv.backend.scratch import scratch
from deepconv.ops import _validate as check

LABEL_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def softmax(logits, out=None):
    """``probs[r] = exp(logits[r] - max) / sum(exp(logits[r] - max))`` per row.

    ``logits``: float32/float64, C-contiguous, shape (N, K) with K >= 1 (a
    classifier's (N, K, 1, 1) output reshaped). Subtracting the row max keeps
    every exponent <= 0, so large logits (+-1e4) give finite results; NaN in
    a row makes the whole row NaN. ``out``: (N, K), same dtype and device,
    not overlapping ``logits``; allocated if None. Returns probs.
    """
    check.float_array(logits, "logits")
    n, k = _rows(logits, "logits")
    if out is not None:
        check.output(out, "out", logits, "logits")
    dev, be = check.device_and_backend(logits=logits, out=out)
    if out is None:
        out = be.empty(logits.shape, logits.dtype, dev)
    elif check.overlaps(out, logits, be):
        raise ValueError("out: shares memory with logits; pass a separate array")
    if n:
        with be.activate(dev):
            be.module.softmax_fprop(
                be.pointer(logits), be.pointer(out), n, k, logits.dtype.name, be.stream_handle(dev)
            )
    return out


def softmax_cross_entropy(logits, labels, out=None, loss_out=None):
    """Fused softmax + cross-entropy; returns ``(loss, probs)``.

    ``loss`` is the mean over the batch of ``-log softmax(logits[r])[labels[r]]``
    (computed as ``logsumexp(logits[r]) - logits[r, labels[r]]``), a 0-d array
    of the logits' dtype on their device (``float(loss)`` for a number; a GPU
    result stays on the GPU until asked). The per-row losses are summed in a
    fixed order, so the loss is bitwise repeatable. ``probs`` (N, K) is the
    softmax, which :func:`softmax_cross_entropy_backward` takes.

    ``logits``: float32/float64 (N, K), N >= 1, K >= 1. ``labels``: int32 or
    int64 (N,), each in [0, K) (checked before launching: ValueError naming
    the first bad row). Logits of +-1e4 give finite results; NaN in a row
    gives NaN probabilities for that row and a NaN loss. ``out`` (N, K), when
    given, receives ``probs`` (a layer passes the same array every step); it
    must not overlap ``logits``. ``loss_out``, when given, a 0-d or (1,)
    array of the logits' dtype on their device, receives the loss and is
    returned (so a training step need not allocate it).
    """
    check.float_array(logits, "logits")
    n, k = _rows(logits, "logits")
    if n == 0:
        raise ValueError("logits: expected at least one row (the mean loss of no samples is undefined)")
    label_array(labels, "labels", n)
    if out is not None:
        check.output(out, "out", logits, "logits")
    if loss_out is not None:
        _check_loss_out(loss_out, logits)
    dev, be = check.device_and_backend(logits=logits, labels=labels, out=out, loss_out=loss_out)
    check.out_disjoint(out, be, logits=logits)
    for name, arr in (("logits", logits), ("out", out)):
        if loss_out is not None and arr is not None and check.overlaps(loss_out, arr, be):
            raise ValueError(f"loss_out: shares memory with {name}; pass a separate array")
    check_label_range(labels, "labels", k)
    probs = be.empty((n, k), logits.dtype, dev) if out is None else out
    # Per-row losses only feed the fixed-order mean: scratch, reused.
    nbytes = n * logits.dtype.itemsize
    losses = scratch(be, dev, nbytes, "softmax_row_losses")[:nbytes].view(logits.dtype)
    loss = be.empty((1,), logits.dtype, dev) if loss_out is None else loss_out.reshape(1)
    with be.activate(dev):
        be.module.softmax_xent_fprop(
            be.pointer(logits),
            be.pointer(labels),
            be.pointer(probs),
            be.pointer(losses),
            be.pointer(loss),
            n,
            k,
            logits.dtype.name,
            labels.dtype.name,
            be.stream_handle(dev),
        )
    return loss.reshape(()), probs


def _check_loss_out(loss_out, logits):
    check.float_array(loss_out, "loss_out")
    if loss_out.shape not in ((), (1,)) or loss_out.dtype != logits.dtype:
        raise ValueError(f"loss_out: expected a 0-d or (1,) {logits.dtype} array, got shape "
                         f"{tuple(loss_out.shape)} {loss_out.dtype}")
    check.writeable(loss_out, "loss_out")


def softmax_cross_entropy_backward(probs, labels, scale=None, out=None):
    """``dlogits = (probs - onehot(labels)) * scale``; returns dlogits.

    The gradient of :func:`softmax_cross_entropy`'s mean loss with respect to
    the logits when ``scale`` is 1/N (the default); pass ``scale=1.0`` for the
    summed loss. ``probs``: (N, K), the forward's probabilities; ``labels``
    as in the forward. ``out``: (N, K); ``out=probs`` computes in place.
    """
    check.float_array(probs, "probs")
    n, k = _rows(probs, "probs")
    if n == 0:
        raise ValueError("probs: expected at least one row")
    label_array(labels, "labels", n)
    scale = _scale(scale, n)
    if out is not None:
        check.output(out, "out", probs, "probs")
    dev, be = check.device_and_backend(probs=probs, labels=labels, out=out)
    if out is None:
        out = be.empty(probs.shape, probs.dtype, dev)
    else:
        check.in_place_or_disjoint(out, "out", probs, "probs", be)
        if check.overlaps(out, labels, be):
            raise ValueError("out: shares memory with labels; pass a separate array")
    check_label_range(labels, "labels", k)
    with be.activate(dev):
        be.module.softmax_xent_bprop(
            be.pointer(probs),
            be.pointer(labels),
            be.pointer(out),
            n,
            k,
            scale,
            probs.dtype.name,
            labels.dtype.name,
            be.stream_handle(dev),
        )
    return out


def _rows(arr, name: str) -> tuple[int, int]:
    """(N, K) of a 2-D array with K >= 1."""
    if arr.ndim != 2:
        raise ValueError(
            f"{name}: expected shape (N, K), got {tuple(arr.shape)}; reshape a (N, K, 1, 1) "
            "classifier output with .reshape(N, K)"
        )
    n, k = arr.shape
    if k < 1:
        raise ValueError(f"{name}: expected at least one class (K >= 1), got shape {tuple(arr.shape)}")
    return n, k


def label_array(labels, name: str, n: int):
    """``labels`` must be a C-contiguous int32/int64 array of shape (n,)."""
    if not is_array(labels):
        raise TypeError(
            f"{name}: expected a numpy.ndarray (emulated device) or a cupy.ndarray "
            f"(CUDA device), got {type(labels).__name__}"
        )
    if labels.dtype not in LABEL_DTYPES:
        raise TypeError(f"{name}: expected dtype int32 or int64, got {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), one label per row, got {tuple(labels.shape)}")
    if not labels.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array, got strides {labels.strides}")
    return labels


def check_label_range(labels, name: str, k: int):
    """Every label in [0, k); ValueError naming the first that is not. (Reads
    the labels back: a synchronisation on a GPU, once per batch.)"""
    if labels.size == 0:
        return
    bad = (labels < 0) | (labels >= k)
    if bool(bad.any()):
        first = int(bad.argmax())
        raise ValueError(
            f"{name}: expected class indices in [0, {k}), got {name}[{first}] = {int(labels[first])}"
        )


def _scale(scale, n: int) -> float:
    if scale is None:
        return 1.0 / n
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale: expected a float, got {type(scale).__name__}")
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale: expected a finite value, got {scale}")
    return scale
