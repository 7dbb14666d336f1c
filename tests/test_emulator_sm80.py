"""The emulator's sm_80 instructions (csrc/emu/warp_matrix.cpp, async_copy.cpp),
through the kernels of csrc/emu/selftest/matrix_semantics.cu.

The fragment layouts below are written out here from the PTX ISA tables
("Matrix Fragments for mma.m16n8k8" for .tf32, and ldmatrix's), independently
of the emulator's own: the tests lay matrices out into lane registers, run the
instruction, and read the result back through the table, so a wrong index on
either side fails. cvt.rna.tf32.f32 is checked on its edge values against an
exact float64 rounding; cp.async on a 3-stage ring, including the three ways a
pipeline can read a stage too early.
"""

import numpy as np
import pytest

_emu = pytest.importorskip("deepconv._emu")
selftest = pytest.importorskip("deepconv._emu_selftest")


def ptr(a):
    return a.ctypes.data


@pytest.fixture(autouse=True)
def restore_emulator_settings():
    saved = _emu.settings()
    yield
    _emu.set_race_check(saved["race_check"], saved["seed"])


# ---- cvt.rna.tf32.f32 -------------------------------------------------------


def bits(values):
    return np.asarray(values, np.uint32).view(np.float32)


def cvt_tf32(x):
    x = np.ascontiguousarray(x, np.float32)
    y = np.full_like(x, 7.0)
    selftest.cvt_tf32(ptr(x), ptr(y), x.size)
    return y


def tf32_reference(x):
    """Round to 11 significant bits, ties away from zero, exactly in float64;
    below 2^-126 the quantum stays 2^-136 (TF32 denormals keep 10 bits)."""
    x64 = np.asarray(x, np.float32).astype(np.float64)
    out = np.empty_like(x64)
    for i, v in enumerate(x64):
        if not np.isfinite(v) or v == 0:
            out[i] = v
            continue
        e = max(int(np.floor(np.log2(abs(v)))), -126)
        quantum = 2.0 ** (e - 10)
        out[i] = np.sign(v) * np.floor(abs(v) / quantum + 0.5) * quantum
    with np.errstate(over="ignore"):
        return out.astype(np.float32)  # past the largest float: inf


def test_cvt_rna_tf32_edge_values():
    one_ulp = 2.0**-10  # TF32's ulp at 1.0
    cases = {
        1.0: 1.0,
        1 + one_ulp / 2: 1 + one_ulp,  # a tie goes away from zero (to-even would give 1)
        -(1 + one_ulp / 2): -(1 + one_ulp),
        1 + one_ulp / 2 - 2.0**-23: 1.0,  # just below the tie
        1 + 3 * one_ulp / 2: 1 + 2 * one_ulp,
        -0.0: -0.0,
    }
    x = np.array(list(cases), np.float32)
    y = cvt_tf32(x)
    np.testing.assert_array_equal(y, np.array(list(cases.values()), np.float32))
    assert np.signbit(y[-1])

    raw = {
        0x7F7FE000: 0x7F7FE000,  # the largest TF32 stays
        0x7F7FEFFF: 0x7F7FE000,  # below the tie to the next binade
        0x7F7FF000: 0x7F800000,  # the tie past the largest: +inf
        0x7F7FFFFF: 0x7F800000,  # FLT_MAX
        0xFF7FFFFF: 0xFF800000,
        0x7F800000: 0x7F800000,  # +inf
        0xFF800000: 0xFF800000,  # -inf
        0x00001000: 0x00002000,  # denormal tie: away from zero
        0x00000FFF: 0x00000000,
        0x807FF000: 0x80800000,  # largest denormal rounds into the normals
    }
    got = cvt_tf32(bits(list(raw))).view(np.uint32)
    np.testing.assert_array_equal(got, np.array(list(raw.values()), np.uint32))
    for nan in (0x7FC00000, 0xFFC00001, 0x7F800001):  # quiet, negative, signalling
        assert cvt_tf32(bits([nan])).view(np.uint32)[0] == 0x7FFFFFFF


def test_cvt_rna_tf32_matches_exact_rounding():
    rng = np.random.default_rng(0)
    scaled = rng.standard_normal(2000) * 10.0 ** rng.integers(-40, 40, 2000)
    with np.errstate(over="ignore"):
        scaled = scaled.astype(np.float32)  # some overflow to inf, some become denormal
    raw = bits(rng.integers(0, 2**32, 2000, dtype=np.uint64).astype(np.uint32))
    x = np.concatenate([scaled, raw])
    x = x[np.isfinite(x)]
    y = cvt_tf32(x)
    np.testing.assert_array_equal(y.view(np.uint32), tf32_reference(x).view(np.uint32))
    assert not np.any(y.view(np.uint32) & 0x1FFF)


# ---- mma.sync.m16n8k8 .tf32 --------------------------------------------------
# Lane l: groupID g = l // 4, threadID_in_group t = l % 4.


def a_position(lane, i):  # a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4)
    g, t = divmod(lane, 4)
    return g + 8 * (i % 2), t + 4 * (i // 2)


def b_position(lane, i):  # b0 (k=t, n=g), b1 (k=t+4, n=g)
    g, t = divmod(lane, 4)
    return t + 4 * i, g


def c_position(lane, i):  # c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1)
    g, t = divmod(lane, 4)
    return g + 8 * (i // 2), 2 * t + i % 2


def to_fragments(matrix, position, regs):
    return np.array([[matrix[position(lane, i)] for i in range(regs)] for lane in range(32)],
                    np.float32)


def from_fragments(frags, position, shape):
    out = np.full(shape, np.nan, np.float32)
    for lane in range(32):
        for i in range(frags.shape[1]):
            out[position(lane, i)] = frags[lane, i]
    return out


def run_mma(As, Bs, Cs, round_inputs):
    a = np.stack([to_fragments(A, a_position, 4) for A in As])
    b = np.stack([to_fragments(B, b_position, 2) for B in Bs])
    c = np.stack([to_fragments(C, c_position, 4) for C in Cs])
    d = np.full_like(c, np.nan)
    selftest.mma_tf32(ptr(a), ptr(b), ptr(c), ptr(d), len(As), round_inputs)
    return [from_fragments(frag, c_position, (16, 8)) for frag in d]


def test_mma_tf32_fragments_exact():
    # Small integers: every product and sum is exact, so D must equal A B + C
    # bitwise, and a misplaced fragment element cannot go unnoticed.
    rng = np.random.default_rng(1)
    As = [rng.integers(-8, 9, (16, 8)).astype(np.float32) for _ in range(3)]
    Bs = [rng.integers(-8, 9, (8, 8)).astype(np.float32) for _ in range(3)]
    Cs = [rng.integers(-64, 65, (16, 8)).astype(np.float32) for _ in range(3)]
    for A, B, C, D in zip(As, Bs, Cs, run_mma(As, Bs, Cs, round_inputs=False)):
        np.testing.assert_array_equal(D, A @ B + C)


def test_mma_tf32_ignores_low_mantissa_bits():
    # Without cvt.rna the tensor core reads only a .tf32 operand's top 19
    # bits: 1 + 2^-12 is 1 there, 1 + 2^-9 is itself.
    A = np.full((16, 8), 1 + 2.0**-12, np.float32)
    A[:, 0] = 1 + 2.0**-9
    B = np.ones((8, 8), np.float32)
    C = np.zeros((16, 8), np.float32)
    (D,) = run_mma([A], [B], [C], round_inputs=False)
    np.testing.assert_array_equal(D, np.full((16, 8), 8 + 2.0**-9, np.float32))


def test_mma_tf32_rounded_inputs_against_float64():
    rng = np.random.default_rng(2)
    As = [rng.standard_normal((16, 8)).astype(np.float32) for _ in range(2)]
    Bs = [rng.standard_normal((8, 8)).astype(np.float32) for _ in range(2)]
    Cs = [rng.standard_normal((16, 8)).astype(np.float32) for _ in range(2)]
    for A, B, C, D in zip(As, Bs, Cs, run_mma(As, Bs, Cs, round_inputs=True)):
        Ar = tf32_reference(A.ravel()).reshape(A.shape).astype(np.float64)
        Br = tf32_reference(B.ravel()).reshape(B.shape).astype(np.float64)
        exact = Ar @ Br + C
        bound = 9 * np.finfo(np.float32).eps * (np.abs(Ar) @ np.abs(Br) + np.abs(C))
        assert np.all(np.abs(D - exact) <= bound)
        # and the inputs were rounded: unrounded float64 differs by more
        assert np.abs(D - (A.astype(np.float64) @ B + C)).max() > 1e-5


# ---- ldmatrix -------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 4])
@pytest.mark.parametrize("trans", [False, True])
def test_ldmatrix_fragments(count, trans):
    rng = np.random.default_rng(count + 10 * trans)
    rows = rng.integers(0, 2**16, (32, 8), dtype=np.uint64).astype(np.uint16)
    slot = rng.permutation(32).astype(np.int32)  # lane l names staged row slot[l]
    out = np.zeros((32, 4), np.uint32)
    selftest.ldmatrix_rows(ptr(rows), ptr(slot), ptr(out), count, trans)
    for i in range(count):
        matrix = rows[slot[8 * i: 8 * i + 8]].astype(np.uint32)  # rows from lanes 8i .. 8i+7
        for lane in range(32):
            g, t = divmod(lane, 4)
            if trans:
                lo, hi = matrix[2 * t, g], matrix[2 * t + 1, g]
            else:
                lo, hi = matrix[g, 2 * t], matrix[g, 2 * t + 1]
            assert out[lane, i] == lo | (hi << 16), (i, lane)
    assert not out[:, count:].any()


# ---- cp.async -------------------------------------------------------------------

RING_THREADS = 64


def run_ring(x, tiles, valid, mode, blocks):
    y = np.full_like(x, np.nan)
    selftest.async_ring(ptr(x), ptr(y), tiles, valid, mode, blocks)
    return y


def ring_reference(x, tiles, valid, blocks):
    xb = x.reshape(blocks, -1).copy()
    xb[:, valid:] = 0  # src-size zero fill
    chunks = xb.reshape(blocks, tiles, RING_THREADS, 4)
    return (2 * np.roll(chunks, -1, axis=2)).ravel()  # the right-hand neighbour's floats


@pytest.mark.parametrize("valid", [7 * 256, 5 * 256 + 3 * 4 * 3 + 1, 0])
def test_cp_async_ring_with_zero_fill(valid):
    tiles, blocks = 7, 3
    x = np.random.default_rng(3).standard_normal(blocks * tiles * 256).astype(np.float32)
    y = run_ring(x, tiles, valid, 0, blocks)
    np.testing.assert_array_equal(y, ring_reference(x, tiles, valid, blocks))
    for seed in (1, 2):
        _emu.set_race_check(True, seed)
        np.testing.assert_array_equal(run_ring(x, tiles, valid, 0, blocks), y)


@pytest.mark.parametrize("mode, why", [
    (1, "its own cp.async there has not completed|still in flight"),
    (2, "still in flight|no __syncthreads has published it"),
    (3, "still in flight"),
])
@pytest.mark.parametrize("race_check", [False, True])
def test_cp_async_early_read_raises(mode, why, race_check):
    _emu.set_race_check(race_check, 5)
    x = np.ones(2 * 4 * 256, np.float32)
    with pytest.raises(selftest.AsyncCopyError, match=f"kernel 'async_ring'.*({why})"):
        run_ring(x, 4, 4 * 256, mode, 2)
