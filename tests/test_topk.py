"""deepconv.ops.topk / topk_error against numpy references and PyTorch."""

import numpy as np
import pytest

import deepconv
from deepconv.ops import topk, topk_error
from deepconv.ops.topk import TOPK_MAX_K

from conftest import assert_bitwise_equal, assert_rejected, on

# Named problem list: (N, K, k). "ties" draws scores from 5 values, so most
# entries tie and the lower-index rule decides; "zeros" mixes -0.0 and 0.0.
PROBLEMS = {
    "one_by_one": (1, 1, 1),
    "top1": (6, 10, 1),
    "imagenet_top5": (8, 1000, 5),
    "odd_k32": (7, 37, 32),
    "k_equals_K": (3, 32, 32),
    "warp_plus_one": (5, 33, 3),
    "wide_odd": (2, 1001, 17),
    "ties": (9, 50, 20),
    "zeros": (4, 40, 10),
}
EMU_DEVICES = ["emu:0", "emu:1"]


def scores_for(rng, problem, dtype):
    n, classes, k = PROBLEMS[problem]
    if problem == "ties":
        scores = rng.integers(0, 5, (n, classes)).astype(dtype)
    elif problem == "zeros":
        scores = np.where(rng.random((n, classes)) < 0.5, -0.0, 0.0).astype(dtype)
        scores[:, ::7] = 1
    else:
        scores = np.asarray(rng.standard_normal((n, classes)), dtype=dtype)
    return scores, k


def order_reference(scores):
    """Column order per row: NaN first, then descending value, ties by the
    lower index (np.lexsort sorts by its last key first)."""
    cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    nan = np.isnan(scores)
    value = np.where(nan, 0, scores).astype(np.float64)
    return np.stack([np.lexsort((cols[r], -value[r], ~nan[r])) for r in range(scores.shape[0])])


def topk_reference(scores, k):
    idx = order_reference(scores)[:, :k]
    return np.take_along_axis(scores, idx, axis=1), idx.astype(np.int64)


def error_reference(scores, labels, k):
    top = order_reference(scores)[:, :k]
    return float(np.mean([labels[r] not in top[r] for r in range(len(labels))]))


@pytest.mark.parametrize("problem", PROBLEMS)
def test_topk_matches_numpy(device, dtype, problem, rng):
    scores_host, k = scores_for(rng, problem, dtype)
    scores = on(device, scores_host)
    values, indices = topk(scores, k)
    assert deepconv.device_of(values) == device and deepconv.device_of(indices) == device
    expected_values, expected_indices = topk_reference(scores_host, k)
    assert_bitwise_equal(indices, expected_indices)
    assert_bitwise_equal(values, expected_values)
    assert_bitwise_equal(scores, scores_host)


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("problem", PROBLEMS)
def test_topk_error_matches_numpy(device, dtype, problem, label_dtype, rng):
    scores_host, k = scores_for(rng, problem, dtype)
    n, classes = scores_host.shape
    labels_host = rng.integers(0, classes, n).astype(label_dtype)
    scores, labels = on(device, scores_host), on(device, labels_host)
    for kk in sorted({1, k, classes}):
        error = topk_error(scores, labels, kk)
        assert isinstance(error, float)
        assert error == error_reference(scores_host, labels_host, kk)
    # consistent with topk by construction
    indices = deepconv.to_numpy(topk(scores, k)[1])
    assert topk_error(scores, labels, k) == np.mean([labels_host[r] not in indices[r] for r in range(n)])


def test_topk_error_counts(device, dtype):
    scores = on(device, np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.2, 0.6]], dtype))
    labels = on(device, np.array([1, 2, 1]))
    assert topk_error(scores, labels, 1) == pytest.approx(2 / 3)  # only row 0 hits
    # rows 1 and 2 still miss: their labels tie with a lower column, which ranks first
    assert topk_error(scores, labels, 2) == pytest.approx(2 / 3)
    assert topk_error(scores, labels, 3) == 0.0


def test_nan_ranks_first(device, dtype):
    scores_host = np.array([[1.0, np.nan, 3.0, np.nan, 2.0]], dtype)
    values, indices = topk(on(device, scores_host), 4)
    assert deepconv.to_numpy(indices).tolist() == [[1, 3, 2, 4]]
    assert np.isnan(deepconv.to_numpy(values)[0, :2]).all()
    labels = on(device, np.array([2]))
    assert topk_error(on(device, scores_host), labels, 2) == 1.0
    assert topk_error(on(device, scores_host), labels, 3) == 0.0


def test_infinities(device, dtype):
    scores_host = np.array([[-np.inf, 0.0, np.inf, -1.0, np.inf]], dtype)
    _, indices = topk(on(device, scores_host), 5)
    assert deepconv.to_numpy(indices).tolist() == [[2, 4, 1, 3, 0]]


def test_bitwise_repeatable(device, dtype, rng):
    scores = on(device, rng.integers(0, 3, (33, 200)).astype(dtype))
    first = [deepconv.to_numpy(a) for a in topk(scores, 32)]
    second = topk(scores, 32)
    assert_bitwise_equal(second[0], first[0])
    assert_bitwise_equal(second[1], first[1])


@pytest.mark.parametrize("device_name", EMU_DEVICES)
def test_race_free(device_name, dtype, rng):
    from deepconv.testing import assert_race_free

    scores = deepconv.asarray(rng.integers(0, 4, (6, 70)).astype(dtype), device=device_name)
    labels = deepconv.asarray(rng.integers(0, 70, 6), device=device_name)
    assert_race_free(topk, scores, 9)
    assert_race_free(topk_error, scores, labels, 5)


@pytest.mark.parametrize("problem", ["imagenet_top5", "odd_k32", "ties"])
def test_pytorch_parity(dtype, problem, rng):
    torch = pytest.importorskip("torch")
    scores, k = scores_for(rng, problem, dtype)
    values, indices = topk(scores, k)
    t_values, t_indices = torch.topk(torch.tensor(scores), k, dim=1, largest=True, sorted=True)
    assert_bitwise_equal(values, t_values.numpy())
    if problem != "ties":  # torch does not promise an order among ties
        assert_bitwise_equal(indices, t_indices.numpy())


def test_module_limit_matches():
    from deepconv.backend.emu import _emu

    assert _emu.TOPK_MAX_K == TOPK_MAX_K


# --- bad input -------------------------------------------------------------------


def _arrays():
    scores = deepconv.asarray(np.linspace(-1, 1, 120, dtype=np.float32).reshape(3, 40), device="emu:1")
    return {
        "scores": scores,
        "narrow": deepconv.zeros((3, 4), np.float32, device="emu:1"),
        "flat": deepconv.zeros(40, np.float32, device="emu:1"),
        "no_rows": deepconv.zeros((0, 40), np.float32, device="emu:1"),
        "ints": deepconv.zeros((3, 40), np.int32, device="emu:1"),
        "strided": deepconv.zeros((3, 80), np.float32, device="emu:1")[:, ::2],
        "labels": deepconv.asarray(np.array([0, 39, 2], np.int32), device="emu:1"),
        "labels_high": deepconv.asarray(np.array([0, 40, 2], np.int64), device="emu:1"),
        "labels_other": deepconv.zeros(3, np.int64, device="emu:2"),
    }


BAD_CALLS = {
    "k_zero": (lambda a: topk(a["scores"], 0), ValueError, r"^k: expected 1 <= k <= min\(K, 32\) = 32, got 0"),
    "k_above_32": (lambda a: topk(a["scores"], 33), ValueError, r"^k: expected 1 <= k <= min\(K, 32\) = 32, got 33"),
    "k_above_K": (lambda a: topk(a["narrow"], 5), ValueError, r"^k: expected 1 <= k <= min\(K, 32\) = 4, got 5"),
    "k_float": (lambda a: topk(a["scores"], 1.5), TypeError, r"^k: expected an int, got float"),
    "k_bool": (lambda a: topk(a["scores"], True), TypeError, r"^k: expected an int, got bool"),
    "error_k_above_K": (lambda a: topk_error(a["scores"], a["labels"], 41), ValueError,
                        r"^k: expected 1 <= k <= K = 40, got 41"),
    "scores_1d": (lambda a: topk(a["flat"], 1), ValueError, r"^scores: expected shape \(N, K\)"),
    "scores_int": (lambda a: topk(a["ints"], 1), TypeError, r"^scores: expected dtype float32 or float64"),
    "scores_strided": (lambda a: topk(a["strided"], 1), ValueError, r"^scores: expected a C-contiguous"),
    "error_no_rows": (lambda a: topk_error(a["no_rows"], a["labels"][:0]), ValueError,
                      r"^scores: expected at least one row"),
    "labels_high": (lambda a: topk_error(a["scores"], a["labels_high"], 5), ValueError,
                    r"^labels: expected class indices in \[0, 40\), got labels\[1\] = 40"),
    "labels_device": (lambda a: topk_error(a["scores"], a["labels_other"]), ValueError,
                      r"scores is on emu:1, labels is on emu:2"),
    "labels_float": (lambda a: topk_error(a["scores"], a["scores"][:, 0].copy()), TypeError,
                     r"^labels: expected dtype int32 or int64"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input(case):
    call, error, message = BAD_CALLS[case]
    assert_rejected(call, error, message, _arrays())


def test_empty_batch_topk(dtype):
    values, indices = topk(deepconv.zeros((0, 7), dtype, device="emu:1"), 3)
    assert values.shape == (0, 3) and indices.shape == (0, 3) and indices.dtype == np.int64
