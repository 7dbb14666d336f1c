"""The emulator's CUDA semantics, kernel by kernel (csrc/emu/selftest/).

Each test launches one small purpose-written kernel from
``deepconv._emu_selftest`` and checks it against numpy, or checks that the
emulator raises what a GPU would only show as a hang or silent corruption.
A failure here is an emulator bug (STYLE.md): fix the emulator and keep the
test as its regression test.

``_emu_selftest`` shares the emulator runtime with ``_emu``, so the settings
(race check, worker threads) are changed through ``_emu``; the fixture
restores them after each test.
"""

import time

import numpy as np
import pytest

_emu = pytest.importorskip("deepconv._emu")
selftest = pytest.importorskip("deepconv._emu_selftest")

RACE_SEEDS = (1, 2, 3)


def ptr(a):
    return a.ctypes.data


set_race_check = _emu.set_race_check
set_num_threads = _emu.set_num_threads


@pytest.fixture(autouse=True)
def restore_emulator_settings():
    saved = _emu.settings()
    yield
    _emu.set_race_check(saved["race_check"], saved["seed"])
    _emu.set_num_threads(saved["threads"])


# ---- runners: launch one kernel on fresh numpy buffers, return the results ----


def run_block_sum(x, blocks, threads):
    out = np.full(blocks, np.nan, np.float32)
    selftest.block_sum(ptr(x), ptr(out), x.size, blocks, threads)
    return out


def block_sum_reference(x, blocks, threads):
    owner = (np.arange(x.size) // threads) % blocks  # grid-stride ownership
    return np.bincount(owner, weights=x.astype(np.float64), minlength=blocks)


def run_warp_shuffles(x, blocks, threads):
    n = blocks * threads
    out = {name: np.full(n, np.nan, np.float32) for name in ("xor_total", "bcast", "scan", "seg16")}
    out["down"] = np.full(n // 32, np.nan, np.float32)
    out["rot"] = np.full(n, np.nan, np.float64)
    selftest.warp_shuffles(ptr(x), ptr(out["down"]), ptr(out["xor_total"]), ptr(out["bcast"]),
                           ptr(out["scan"]), ptr(out["seg16"]), ptr(out["rot"]), blocks, threads)
    return out


def run_atomics(x, blocks, threads):
    isum, imax, cas_count, counter = (np.zeros(1, np.int32) for _ in range(4))
    imax[0] = np.iinfo(np.int32).min
    fsum = np.zeros(1, np.float32)
    dsum = np.zeros(1, np.float64)
    tickets = np.full(x.size, -1, np.int32)
    selftest.atomics(ptr(x), x.size, ptr(isum), ptr(fsum), ptr(dsum), ptr(imax), ptr(cas_count),
                     ptr(counter), ptr(tickets), blocks, threads)
    return dict(isum=isum[0], fsum=fsum[0], dsum=dsum[0], imax=imax[0], cas_count=cas_count[0],
                counter=counter[0], tickets=tickets)


def run_racy(x, barrier_first, blocks, threads):
    y = np.full(x.size, np.nan, np.float32)
    selftest.racy_neighbour(ptr(x), ptr(y), barrier_first, blocks, threads)
    return y


# ---- (a) block reduction through shared memory and __syncthreads -------------


@pytest.mark.parametrize("threads", [1, 32, 64, 256, 1024])
def test_block_sum_tree_reduction(rng, threads):
    x = rng.integers(-8, 9, size=10_007).astype(np.float32)  # small integers: every order exact
    blocks = 7
    np.testing.assert_array_equal(run_block_sum(x, blocks, threads),
                                  block_sum_reference(x, blocks, threads))


# ---- (b) warp shuffles: down, xor (and width 16), broadcast, up-scan, 8-byte values


@pytest.mark.parametrize("blocks,threads", [(1, 32), (3, 128), (2, 1024)])
def test_warp_shuffles(rng, blocks, threads):
    x = rng.integers(-50, 51, size=blocks * threads).astype(np.float32)
    out = run_warp_shuffles(x, blocks, threads)
    warps = x.reshape(-1, 32)
    totals = warps.sum(axis=1)
    w = np.arange(warps.shape[0])
    np.testing.assert_array_equal(out["down"], totals)
    np.testing.assert_array_equal(out["xor_total"], np.repeat(totals, 32))
    np.testing.assert_array_equal(out["bcast"], np.repeat(warps[w, w % 32], 32))
    np.testing.assert_array_equal(out["scan"], np.cumsum(warps, axis=1).ravel())
    np.testing.assert_array_equal(out["seg16"], np.repeat(x.reshape(-1, 16).sum(axis=1), 16))
    np.testing.assert_array_equal(out["rot"], 0.5 * np.roll(warps, -1, axis=1).astype(np.float64).ravel())


# ---- (c) warp votes -------------------------------------------------------------


def test_warp_votes(rng):
    patterns = [
        np.zeros(32, np.int32),
        np.ones(32, np.int32),
        (np.arange(32) == 31).astype(np.int32),
        (np.arange(32) % 2).astype(np.int32),
        rng.integers(0, 2, 32).astype(np.int32) * rng.integers(1, 100, 32).astype(np.int32),
        (np.arange(32) != 0).astype(np.int32) * -7,  # any nonzero value is true
    ]
    pred = np.concatenate(patterns)
    blocks, threads = 2, 96
    ballot = np.zeros(6, np.uint32)
    any_, all_ = np.full(6, -1, np.int32), np.full(6, -1, np.int32)
    selftest.warp_votes(ptr(pred), ptr(ballot), ptr(any_), ptr(all_), blocks, threads)
    bits = pred.reshape(6, 32) != 0
    expected_ballot = (bits.astype(np.uint64) << np.arange(32, dtype=np.uint64)).sum(axis=1)
    np.testing.assert_array_equal(ballot, expected_ballot.astype(np.uint32))
    np.testing.assert_array_equal(any_ != 0, bits.any(axis=1))
    np.testing.assert_array_equal(all_ != 0, bits.all(axis=1))


# ---- (d) __syncthreads_count / _and / _or -----------------------------------------


@pytest.mark.parametrize("threads", [200, 1024])
def test_block_votes(rng, threads):
    rows = [
        np.zeros(threads, np.int32),
        np.ones(threads, np.int32),
        rng.integers(0, 2, threads).astype(np.int32),
        (np.arange(threads) == threads - 1).astype(np.int32),
        (np.arange(threads) != threads // 2).astype(np.int32),
    ]
    pred = np.concatenate(rows)
    blocks = len(rows)
    count, all_, any_ = (np.full(blocks, -1, np.int32) for _ in range(3))
    selftest.block_votes(ptr(pred), ptr(count), ptr(all_), ptr(any_), blocks, threads)
    bits = pred.reshape(blocks, threads) != 0
    np.testing.assert_array_equal(count, bits.sum(axis=1))
    np.testing.assert_array_equal(all_ != 0, bits.all(axis=1))
    np.testing.assert_array_equal(any_ != 0, bits.any(axis=1))


# ---- (e) atomics across blocks running on several OS threads ------------------------


def test_atomics_across_blocks(rng):
    n = 100_003
    x = rng.integers(0, 100, size=n).astype(np.int32)  # float total < 2**24: exact in any order
    got = run_atomics(x, blocks=64, threads=256)
    assert got["isum"] == x.sum()
    assert got["fsum"] == np.float32(x.sum())
    assert got["dsum"] == float(x.sum())
    assert got["imax"] == x.max()
    assert got["cas_count"] == n
    assert got["counter"] == n
    np.testing.assert_array_equal(np.sort(got["tickets"]), np.arange(n))  # each ticket once


# ---- (f) dynamic shared memory sized at launch ----------------------------------------


@pytest.mark.parametrize("per_block", [1, 1000, 3001, 12288])  # 12288 floats = 48 KiB
def test_dynamic_shared_memory(rng, per_block):
    blocks = 3
    x = rng.standard_normal(blocks * per_block).astype(np.float32)
    y = np.full_like(x, np.nan)
    selftest.dynamic_shared_reverse(ptr(x), ptr(y), per_block, blocks, 128)
    np.testing.assert_array_equal(y, x.reshape(blocks, per_block)[:, ::-1].ravel())


# ---- (g) race check: a racy kernel changes, a race-free one does not ---------------------


@pytest.mark.parametrize("barrier_first", [False, True], ids=["barrier_free", "after_barrier"])
def test_race_check_exposes_racy_kernel(rng, barrier_first):
    blocks, threads = 4, 128
    x = rng.integers(1, 100, size=blocks * threads).astype(np.float32)
    set_race_check(False)
    default = run_racy(x, barrier_first, blocks, threads)
    # The default schedule runs a block's threads in index order, so thread t
    # reads its left neighbour's finished value.
    rows = x.reshape(blocks, threads)
    neighbour = np.concatenate([rows[:, :1], rows[:, :-1]], axis=1)
    if barrier_first:
        neighbour = np.concatenate([2 * rows[:, :1], 2 * rows[:, :-1]], axis=1)
    np.testing.assert_array_equal(default, neighbour.ravel())
    for seed in RACE_SEEDS:
        set_race_check(True, seed)
        assert _emu.race_check()
        racy = run_racy(x, barrier_first, blocks, threads)
        assert not np.array_equal(racy, default), f"race check (seed {seed}) did not change the result"


def test_race_check_keeps_race_free_reduction_bitwise(rng):
    x = rng.standard_normal(50_000).astype(np.float32)  # rounding makes any reordering visible
    set_race_check(False)
    default = run_block_sum(x, 13, 256)
    for seed in RACE_SEEDS:
        set_race_check(True, seed)
        np.testing.assert_array_equal(run_block_sum(x, 13, 256), default)
        out = run_warp_shuffles(x[:4096], 8, 512)
        set_race_check(False)
        np.testing.assert_array_equal(run_warp_shuffles(x[:4096], 8, 512)["scan"], out["scan"])


def test_race_check_setting_round_trips():
    set_race_check(True, 42)
    assert _emu.race_check() is True
    assert _emu.settings()["seed"] == 42
    set_race_check(False)
    assert _emu.race_check() is False


# ---- (h) barrier divergence raises, promptly, and the emulator stays usable --------------


@pytest.mark.parametrize("mode", [0, 1], ids=["some_threads_exit", "different_barriers"])
def test_divergent_barrier_raises_within_a_second(mode):
    out = np.zeros(64, np.int32)
    start = time.perf_counter()
    with pytest.raises(_emu.BarrierDivergenceError, match="divergent_barrier"):
        selftest.divergent_barrier(ptr(out), mode, 64)
    assert time.perf_counter() - start < 1.0
    # The error is an EmulatorError, itself a RuntimeError.
    assert issubclass(_emu.BarrierDivergenceError, _emu.EmulatorError)
    assert issubclass(_emu.EmulatorError, RuntimeError)
    # The next launch runs normally.
    selftest.divergent_barrier(ptr(out), 2, 64)
    np.testing.assert_array_equal(out, 1)


# ---- (i) misaligned vector accesses fault, as on a GPU --------------------------------


@pytest.mark.parametrize("load_offset,store_offset,what", [(1, 0, "load"), (0, 2, "store"), (3, 3, "load")])
def test_misaligned_float4_raises(load_offset, store_offset, what):
    x = np.zeros(64 + 8, np.float32)
    y = np.zeros_like(x)
    assert ptr(x) % 16 == 0 and ptr(y) % 16 == 0  # numpy aligns to 16 or more
    with pytest.raises(_emu.MisalignedAccessError, match=what):
        selftest.vector_copy(ptr(x), ptr(y), load_offset, store_offset, 16)


@pytest.mark.parametrize("offset", [0, 4])
def test_aligned_float4_copies(rng, offset):
    x = rng.standard_normal(64 + 8).astype(np.float32)
    y = np.zeros_like(x)
    selftest.vector_copy(ptr(x), ptr(y), offset, offset, 16)
    np.testing.assert_array_equal(y[offset:offset + 64], x[offset:offset + 64])


# ---- (j) invalid launch configurations ----------------------------------------------------


@pytest.mark.parametrize("grid,block,shared", [
    ((1,), (2048,), 0),
    ((1,), (32, 32, 2), 0),
    ((1,), (1, 1, 65), 0),
    ((1, 65536), (32,), 0),
    ((0,), (32,), 0),
    ((1,), (32,), 1 << 20),
])
def test_invalid_launch_config_raises(grid, block, shared):
    out = np.zeros(12 * 4096, np.int32)
    with pytest.raises(_emu.LaunchConfigError, match="write_indices"):
        selftest.write_indices(ptr(out), grid, block, shared)


# ---- (k) 2-D / 3-D grids and blocks ----------------------------------------------------------


@pytest.mark.parametrize("grid,block", [
    ((5, 1, 1), (7, 1, 1)),
    ((2, 3, 1), (32, 2, 1)),
    ((3, 2, 2), (4, 3, 2)),
    ((1, 1, 3), (1, 1, 64)),
])
def test_grid_and_block_indices(grid, block):
    n_blocks, n_threads = np.prod(grid), np.prod(block)
    out = np.full((n_blocks * n_threads, 12), -1, np.int32)
    selftest.write_indices(ptr(out), grid, block)
    # Linear ids are x-fastest for both blocks and threads, as in CUDA.
    bz, by, bx = np.unravel_index(np.arange(n_blocks), grid[::-1])
    tz, ty, tx = np.unravel_index(np.arange(n_threads), block[::-1])
    expected = np.empty_like(out)
    expected[:, 0:3] = np.repeat(np.stack([bx, by, bz], axis=1), n_threads, axis=0)
    expected[:, 3:6] = np.tile(np.stack([tx, ty, tz], axis=1), (n_blocks, 1))
    expected[:, 6:9] = block
    expected[:, 9:12] = grid
    np.testing.assert_array_equal(out, expected)


# ---- (l) one warp does collectives while the other has returned -------------------------------


def test_shuffles_in_warp_1_while_warp_0_has_returned(rng):
    blocks = 4
    x = rng.integers(-20, 21, size=blocks * 64).astype(np.float32)
    out = np.full(blocks * 32, np.nan, np.float32)
    selftest.warp1_shuffle(ptr(x), ptr(out), blocks)
    warp1 = x.reshape(blocks, 2, 32)[:, 1]
    np.testing.assert_array_equal(out, np.repeat(warp1.sum(axis=1), 32))


# ---- settings: worker threads do not change results ---------------------------------------------


def test_num_threads_1_and_2_give_identical_results(rng):
    x = rng.standard_normal(200_000).astype(np.float32)
    xi = rng.integers(0, 100, size=50_000).astype(np.int32)
    results = []
    for threads in (1, 2):
        set_num_threads(threads)
        assert _emu.num_threads() == threads
        sums = run_block_sum(x, 64, 256)
        shuffles = run_warp_shuffles(x[:64 * 256], 64, 256)
        atom = run_atomics(xi, 32, 128)
        y = np.empty_like(x)
        _emu.relu_fprop(ptr(x), ptr(y), x.size, "float32")
        results.append((sums, shuffles, atom["isum"], atom["fsum"], y))
    (s1, sh1, i1, f1, y1), (s2, sh2, i2, f2, y2) = results
    np.testing.assert_array_equal(s1, s2)
    for key in sh1:
        np.testing.assert_array_equal(sh1[key], sh2[key])
    assert (i1, f1) == (i2, f2)
    np.testing.assert_array_equal(y1, y2)


def test_changing_the_worker_count_between_launches_is_safe(rng):
    # Regression: workers created by a resize used to wake up on the previous,
    # finished launch and dereference its (null) job.
    x = rng.standard_normal(4096).astype(np.float32)
    expected = block_sum_reference(x, 4, 256)
    for i in range(300):
        set_num_threads(1 + i % 3)
        np.testing.assert_allclose(run_block_sum(x, 4, 256), expected, rtol=1e-5)
