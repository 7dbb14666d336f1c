"""deepconv.ops.dropout / dropout_backward and the Philox4x32-10 generator.

The generator is checked against the Random123 known-answer vectors and
against an independent numpy implementation written from the paper's
description; the dropout mask is checked bit for bit against that numpy
implementation, which is what makes it the same on a GPU and on the
emulator. numpy's own ``Philox`` bit generator is Philox4x64 (64-bit words,
a 4 x 64-bit counter and 2 x 64-bit key), so it cannot be driven to the
4x32 layout and is not used here.
"""

import math

import numpy as np
import pytest

import deepconv
from deepconv.ops import dropout, dropout_backward
from deepconv.ops.dropout import philox4x32_10
from deepconv.testing import assert_gradient_close, assert_race_free, numeric_gradient

from conftest import assert_bitwise_equal, assert_rejected, on

EMU_DEVICES = ["emu:0", "emu:1"]
MASK32 = np.uint64(0xFFFFFFFF)

# Random123 1.14, tests/kat_vectors, rows "philox4x32 10": counter, key, result.
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]

# Named problem list: element counts around the 4-element Philox groups and
# the emulator's 64-element chunks, and more than one grid.
PROBLEMS = {
    "one": (1,),
    "three": (3,),
    "group": (4,),
    "odd_nchw": (2, 3, 5, 7),
    "chunk_tail": (4099,),
    "fc6_batch": (16, 4096),
    "empty": (0,),
    "scalar": (),
}


def philox_reference(counters, keys, rounds=10):
    """Philox4x32 in numpy (Salmon et al. 2011): counters (n, 4), keys (n, 2)
    uint32 -> (n, 4) uint32. 32x32-bit products are exact in uint64."""
    c = [counters[:, w].astype(np.uint64) for w in range(4)]
    k0, k1 = keys[:, 0].astype(np.uint64), keys[:, 1].astype(np.uint64)
    for r in range(rounds):
        if r:
            k0 = (k0 + np.uint64(0x9E3779B9)) & MASK32
            k1 = (k1 + np.uint64(0xBB67AE85)) & MASK32
        p0 = c[0] * np.uint64(0xD2511F53)
        p1 = c[2] * np.uint64(0xCD9E8D57)
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & MASK32, (p0 >> np.uint64(32)) ^ c[3] ^ k1,
             p0 & MASK32]
    return np.stack(c, axis=1).astype(np.uint32)


def keep_reference(n, p, seed, step):
    """Which of n elements dropout keeps: word i % 4 of
    Philox(counter=(i // 4, step), key=seed) >= round(p * 2^32)."""
    groups = np.arange((n + 3) // 4, dtype=np.uint64)
    counters = np.empty((groups.size, 4), np.uint32)
    counters[:, 0] = groups & MASK32
    counters[:, 1] = groups >> np.uint64(32)
    counters[:, 2] = step & 0xFFFFFFFF
    counters[:, 3] = step >> 32
    keys = np.empty((groups.size, 2), np.uint32)
    keys[:, 0] = seed & 0xFFFFFFFF
    keys[:, 1] = seed >> 32
    words = philox_reference(counters, keys).reshape(-1)[:n]
    threshold = min(round(p * 2**32), 2**32 - 1)
    return words >= np.uint32(threshold)


def normal(rng, shape, dtype):
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


# --- the generator -----------------------------------------------------------------


@pytest.mark.parametrize("case", range(len(KAT)))
def test_philox_known_answers(device, case):
    counter, key, expected = KAT[case]
    out = philox4x32_10(on(device, np.array([counter], np.uint32)),
                        on(device, np.array([key], np.uint32)))
    assert deepconv.device_of(out) == device
    assert [hex(w) for w in deepconv.to_numpy(out)[0]] == [hex(w) for w in expected]


def test_philox_reference_known_answers():
    counters = np.array([c for c, _, _ in KAT], np.uint32)
    keys = np.array([k for _, k, _ in KAT], np.uint32)
    assert np.array_equal(philox_reference(counters, keys), np.array([r for _, _, r in KAT], np.uint32))


def test_philox_matches_reference(device, rng):
    counters = rng.integers(0, 2**32, (1000, 4), dtype=np.uint32)
    keys = rng.integers(0, 2**32, (1000, 2), dtype=np.uint32)
    out = philox4x32_10(on(device, counters), on(device, keys))
    assert np.array_equal(deepconv.to_numpy(out), philox_reference(counters, keys))


def test_threshold():
    from deepconv.backend.emu import _emu as module
    assert module.dropout_threshold(0.0) == 0
    assert module.dropout_threshold(0.5) == 2**31
    assert module.dropout_threshold(0.1) == round(0.1 * 2**32)
    assert module.dropout_threshold(math.nextafter(1.0, 0.0)) == 2**32 - 1


# --- the mask --------------------------------------------------------------------


@pytest.mark.parametrize("problem", PROBLEMS)
def test_mask_matches_reference(device, dtype, problem, rng):
    shape = PROBLEMS[problem]
    x_host = np.asarray(normal(rng, shape, dtype) + dtype.type(3))  # a dropped x gives x * 0
    x = on(device, x_host)
    y = deepconv.to_numpy(dropout(x, p=0.3, seed=1234, step=5, scale_at="test"))
    keep = keep_reference(x_host.size, 0.3, 1234, 5).reshape(shape)
    assert_bitwise_equal(y, np.where(keep, x_host, x_host * dtype.type(0)))
    assert_bitwise_equal(x, x_host)  # input untouched


def test_mask_with_64_bit_seed_and_step(dtype, rng):
    x_host = normal(rng, 1001, dtype) + dtype.type(3)
    seed, step = 0xFEDCBA9876543210, 2**64 - 1
    y = deepconv.to_numpy(dropout(x_host, 0.5, seed, step, scale_at="test"))
    assert np.array_equal(y != 0, keep_reference(1001, 0.5, seed, step))


@pytest.mark.parametrize("p", [0.5, 0.1, 0.9])
def test_keep_rate_within_three_sigma(p):
    n = 10**6
    ones = deepconv.asarray(np.ones(n, np.float32), device="emu:1")
    for seed, step in [(0, 0), (7, 123456)]:
        kept = int(np.count_nonzero(deepconv.to_numpy(dropout(ones, p, seed, step))))
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(kept - n * (1 - p)) < 3 * sigma, (seed, step, kept)


def test_same_seed_same_mask_other_step_or_seed_other_mask(device, rng):
    x = on(device, normal(rng, 20000, np.float32) + np.float32(3))
    first = deepconv.to_numpy(dropout(x, 0.5, seed=42, step=3))
    assert_bitwise_equal(dropout(x, 0.5, seed=42, step=3), first)
    for other in (dropout(x, 0.5, seed=42, step=4), dropout(x, 0.5, seed=43, step=3)):
        agree = np.mean((deepconv.to_numpy(other) != 0) == (first != 0))
        assert 0.47 < agree < 0.53  # independent masks agree on p^2 + (1-p)^2 = 1/2


@pytest.mark.parametrize("block_size", [32, 96, 1024])
def test_mask_independent_of_block_size(dtype, block_size, rng):
    x = deepconv.asarray(normal(rng, 100003, dtype), device="emu:1")
    default = deepconv.to_numpy(dropout(x, 0.4, seed=9, step=2))
    assert_bitwise_equal(dropout(x, 0.4, seed=9, step=2, block_size=block_size), default)
    dy = deepconv.asarray(normal(rng, 100003, dtype), device="emu:1")
    assert_bitwise_equal(dropout_backward(dy, 0.4, 9, 2, block_size=block_size),
                         dropout_backward(dy, 0.4, 9, 2))


def test_bitwise_repeatable(device, dtype, rng):
    x = on(device, normal(rng, 70001, dtype))
    assert_bitwise_equal(dropout(x, 0.5, 1, 1), deepconv.to_numpy(dropout(x, 0.5, 1, 1)))


# --- scaling conventions and backward ---------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 0.5, 0.25])
def test_scaling_conventions(device, dtype, p, rng):
    x_host = normal(rng, (3, 1001), dtype)
    x = on(device, x_host)
    keep = keep_reference(x_host.size, p, 11, 0).reshape(x_host.shape)
    zero = dtype.type(0)
    inverted = np.where(keep, x_host * dtype.type(1 / (1 - p)), zero * x_host)
    assert_bitwise_equal(dropout(x, p, 11, 0), inverted)
    assert_bitwise_equal(dropout(x, p, 11, 0, training=False), x_host)
    assert_bitwise_equal(dropout(x, p, 11, 0, scale_at="test"), np.where(keep, x_host, zero * x_host))
    assert_bitwise_equal(dropout(x, p, 11, 0, training=False, scale_at="test"),
                         x_host * dtype.type(1 - p))


@pytest.mark.parametrize("scale_at", ["train", "test"])
@pytest.mark.parametrize("training", [True, False])
def test_backward_uses_the_forward_mask(device, dtype, scale_at, training, rng):
    x_host = normal(rng, 5000, dtype)
    dy_host = normal(rng, 5000, dtype)
    kwargs = dict(p=0.5, seed=77, step=1, training=training, scale_at=scale_at)
    y = deepconv.to_numpy(dropout(on(device, x_host), **kwargs))
    dx = deepconv.to_numpy(dropout_backward(on(device, dy_host), **kwargs))
    multiplier = deepconv.to_numpy(dropout(on(device, np.ones(5000, dtype)), **kwargs))
    assert_bitwise_equal(y, x_host * multiplier)
    assert_bitwise_equal(dx, dy_host * multiplier)


def test_numeric_gradient_float64(rng):
    x = rng.standard_normal(30)
    r = rng.standard_normal(30)

    def loss():
        return np.sum(deepconv.to_numpy(dropout(deepconv.asarray(x, device="emu:1"), 0.5, 3, 8)) * r)

    numeric = numeric_gradient(loss, x)
    analytic = dropout_backward(deepconv.asarray(r, device="emu:1"), 0.5, 3, 8)
    assert_gradient_close(analytic, numeric, rtol=1e-7, atol=1e-9)


def test_in_place(device, dtype, rng):
    x_host = normal(rng, 4099, dtype)
    x = on(device, x_host)
    expected = deepconv.to_numpy(dropout(on(device, x_host), 0.5, 5, 6))
    assert dropout(x, 0.5, 5, 6, out=x) is x
    assert_bitwise_equal(x, expected)
    dy = on(device, x_host)
    assert dropout_backward(dy, 0.5, 5, 6, out=dy) is dy
    assert_bitwise_equal(dy, expected)


def test_nan_and_inf_propagate(device, dtype):
    # NaN stays NaN whether kept or dropped (NaN * 0); a dropped inf is NaN.
    n = 64
    x_host = np.full(n, np.nan, dtype)
    x_host[1::2] = np.inf
    keep = keep_reference(n, 0.5, 0, 0)
    assert keep.any() and not keep.all()
    y = deepconv.to_numpy(dropout(on(device, x_host), 0.5, 0, 0))
    assert np.isnan(y[0::2]).all()
    assert np.array_equal(np.isinf(y[1::2]), keep[1::2])


@pytest.mark.parametrize("device_name", EMU_DEVICES)
def test_race_free(device_name, dtype, rng):
    x = deepconv.asarray(normal(rng, 4099, dtype), device=device_name)
    assert_race_free(lambda a: dropout(a, 0.5, 1, 2), x)
    assert_race_free(lambda a: dropout(a, 0.5, 1, 2, out=a), x)
    assert_race_free(lambda a: dropout_backward(a, 0.3, 4, 5, block_size=64), x)


# --- bad input -------------------------------------------------------------------


def _arrays():
    x = deepconv.asarray(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), device="emu:1")
    flat = deepconv.zeros(13, np.float32, device="emu:1")
    readonly = deepconv.zeros((3, 4), np.float32, device="emu:1")
    readonly.flags.writeable = False
    return {
        "x": x,
        "ints": deepconv.zeros((3, 4), np.int32, device="emu:1"),
        "strided": deepconv.zeros((3, 8), np.float32, device="emu:1")[:, ::2],
        "wrong_shape": deepconv.zeros((4, 3), np.float32, device="emu:1"),
        "other_device": deepconv.zeros((3, 4), np.float32, device="emu:2"),
        "readonly": readonly,
        "shifted_a": flat[:12].reshape(3, 4),
        "shifted_b": flat[1:].reshape(3, 4),
        "counters": deepconv.zeros((2, 4), np.uint32, device="emu:1"),
    }


BAD_CALLS = {
    "x_list": (lambda a: dropout([1.0]), TypeError, r"^x: expected a numpy.ndarray"),
    "x_int": (lambda a: dropout(a["ints"]), TypeError, r"^x: expected dtype float32 or float64"),
    "x_strided": (lambda a: dropout(a["strided"]), ValueError, r"^x: expected a C-contiguous"),
    "p_one": (lambda a: dropout(a["x"], 1.0), ValueError, r"^p: expected a drop probability in \[0, 1\), got 1.0"),
    "p_negative": (lambda a: dropout(a["x"], -0.1), ValueError, r"^p: expected a drop probability"),
    "p_nan": (lambda a: dropout(a["x"], float("nan")), ValueError, r"^p: expected a drop probability"),
    "p_str": (lambda a: dropout(a["x"], "0.5"), TypeError, r"^p: expected a float, got str"),
    "seed_negative": (lambda a: dropout(a["x"], 0.5, -1), ValueError, r"^seed: expected an int in \[0, 2\*\*64\)"),
    "seed_too_big": (lambda a: dropout(a["x"], 0.5, 2**64), ValueError, r"^seed: expected an int in"),
    "seed_float": (lambda a: dropout(a["x"], 0.5, 1.5), TypeError, r"^seed: expected an int, got float"),
    "step_bool": (lambda a: dropout(a["x"], 0.5, 0, True), TypeError, r"^step: expected an int, got bool"),
    "step_negative": (lambda a: dropout_backward(a["x"], 0.5, 0, -3), ValueError, r"^step: expected an int in"),
    "training_str": (lambda a: dropout(a["x"], training="yes"), TypeError, r"^training: expected a bool"),
    "scale_at": (lambda a: dropout(a["x"], scale_at="eval"), ValueError, r"^scale_at: expected 'train' or 'test'"),
    "block_size": (lambda a: dropout(a["x"], block_size=48), ValueError, r"^block_size: expected a multiple of 32"),
    "out_shape": (lambda a: dropout(a["x"], out=a["wrong_shape"]), ValueError, r"^out: expected the shape of x"),
    "out_readonly": (lambda a: dropout(a["x"], out=a["readonly"]), ValueError, r"^out: the array is read-only"),
    "out_device": (lambda a: dropout(a["x"], out=a["other_device"]), ValueError, r"x is on emu:1, out is on emu:2"),
    "out_overlap": (lambda a: dropout(a["shifted_a"], out=a["shifted_b"]), ValueError,
                    r"^out: overlaps x without being the same array"),
    "dy_int": (lambda a: dropout_backward(a["ints"]), TypeError, r"^dy: expected dtype float32 or float64"),
    "dx_overlap": (lambda a: dropout_backward(a["shifted_a"], out=a["shifted_b"]), ValueError,
                   r"^out: overlaps dy without being the same array"),
    "philox_dtype": (lambda a: philox4x32_10(a["x"], a["counters"]), TypeError, r"^counters: expected dtype uint32"),
    "philox_keys": (lambda a: philox4x32_10(a["counters"], a["counters"]), ValueError,
                    r"^keys: expected shape \(n, 2\)"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input(case):
    call, error, message = BAD_CALLS[case]
    assert_rejected(call, error, message, _arrays())


@pytest.mark.slow
def test_keep_rate_over_many_steps():
    # 64 steps of an fc6-sized activation batch (128 x 4096): the per-step
    # keep counts stay within 4 sigma, and no two steps share a mask.
    n, p = 128 * 4096, 0.5
    ones = deepconv.asarray(np.ones(n, np.float32), device="emu:1")
    sigma = math.sqrt(n * p * (1 - p))
    masks = set()
    for step in range(64):
        kept = deepconv.to_numpy(dropout(ones, p, seed=2012, step=step)) != 0
        assert abs(int(kept.sum()) - n * (1 - p)) < 4 * sigma, step
        masks.add(np.packbits(kept).tobytes())
    assert len(masks) == 64
