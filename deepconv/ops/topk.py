"""Top-k per row and top-k error, for evaluation (kernels:
csrc/kernels/topk.cuh)."""

from __future__ import annotations

import numbers

import numpy as np

from deepconv.ops import _validate as check
from deepconv.ops.softmax import _rows, check_label_range, label_array

TOPK_MAX_K = 32  # = dc::ops::kTopkMaxK (csrc/ops/topk.h)


def topk(scores, k):
    """The ``k`` highest scores of each row, and their column indices.

    Returns ``(values, indices)``: ``values`` (N, k) of the scores' dtype and
    ``indices`` (N, k) int64, on the scores' device, each row in descending
    order. The order is total, so the answer is unique and repeatable: NaN
    comes first (as in ``torch.topk``), then larger values; equal values
    (``-0.0 == 0.0``, and NaN with NaN) come in order of their lower index.

    ``scores``: float32/float64, C-contiguous (N, K). ``k``: an int with
    1 <= k <= min(K, 32).
    """
    check.float_array(scores, "scores")
    n, classes = _rows(scores, "scores")
    k = _k(k, min(classes, TOPK_MAX_K), f"min(K, {TOPK_MAX_K}) = {min(classes, TOPK_MAX_K)}")
    dev, be = check.device_and_backend(scores=scores)
    values = be.empty((n, k), scores.dtype, dev)
    indices = be.empty((n, k), np.int64, dev)
    if n:
        with be.activate(dev):
            be.module.topk(
                be.pointer(scores),
                be.pointer(values),
                be.pointer(indices),
                n,
                classes,
                k,
                scores.dtype.name,
                be.stream_handle(dev),
            )
    return values, indices


def topk_error(scores, labels, k=1):
    """The fraction of rows whose label is not among the row's top ``k``
    scores (top-1 error for k=1, top-5 error for k=5), as a Python float.

    "Among the top k" uses :func:`topk`'s order (NaN first, ties by the lower
    index), so it agrees with ``labels[r] in topk(scores, k)[1][r]``; it is
    computed by counting the entries ordered before the label's, so any
    1 <= k <= K works here. ``scores``: float32/float64 (N, K), N >= 1;
    ``labels``: int32/int64 (N,) in [0, K).
    """
    check.float_array(scores, "scores")
    n, classes = _rows(scores, "scores")
    if n == 0:
        raise ValueError("scores: expected at least one row (the error of no samples is undefined)")
    label_array(labels, "labels", n)
    k = _k(k, classes, f"K = {classes}")
    dev, be = check.device_and_backend(scores=scores, labels=labels)
    check_label_range(labels, "labels", classes)
    miss = be.empty((n,), np.int32, dev)
    with be.activate(dev):
        be.module.topk_miss(
            be.pointer(scores),
            be.pointer(labels),
            be.pointer(miss),
            n,
            classes,
            k,
            scores.dtype.name,
            labels.dtype.name,
            be.stream_handle(dev),
        )
        misses = int(miss.sum())  # exact: an integer count
    return misses / n


def _k(k, limit: int, limit_text: str) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k: expected an int, got {type(k).__name__}")
    k = int(k)
    if not 1 <= k <= limit:
        raise ValueError(f"k: expected 1 <= k <= {limit_text}, got {k}")
    return k
