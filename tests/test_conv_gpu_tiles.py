"""The conv launchers with the GPU build's choices (ops/conv_tiles.cuh's
``__CUDACC__`` tile table: 128x128x8 tiles of 256 threads with 8x8 register
tiles, 128x64 general tiles, the GPU image loaders, the GPU split-K goals),
run on the emulator through the test-only module ``deepconv._emu_gputiles``.

Without a GPU this is the only place where those tiles execute in pytest
(tools/gpusim/ runs them on a simulated GPU in CI). The GPU tiles are slow on
the emulator (256 threads a block, a barrier every 8 reduction steps), but
test_conv.py's small problems take seconds; the references are test_conv.py's.
"""

import numpy as np
import pytest

import deepconv
from deepconv.backend import backend_for
from deepconv.backend import emu as emu_backend
from deepconv.ops import conv2d, conv2d_dgrad, conv2d_output_shape, conv2d_wgrad
from deepconv.testing import assert_race_free

import test_conv as base
import test_conv_winograd as wbase
from conftest import on

from deepconv import _emu_gputiles as gputiles

DEVICE = base.DEVICE

# Problems only the GPU goals split: a 3x3 reduction of 576 steps on one tile
# (the GPU splits into chunks of >= 256 steps; the emulator's chunks are 2048).
EXTRA_PROBLEMS = {
    "3x3_split_k_gpu": ((1, 64, 4, 4), (16, 64, 3, 3), 1, 1, 1),
    "3x3_two_tiles": ((2, 16, 9, 9), (130, 16, 3, 3), 1, 1, 1),  # M 162, N 130: 2x2 GPU tiles
}
PROBLEMS = {**base.PROBLEMS, **EXTRA_PROBLEMS}

# Every problem of test_conv.py (each variant and pass: 3x3 narrow and wide,
# general, stride-1 dgrad, fully connected, split-K) plus the two above;
# race-checked: test_conv.py's per-variant list plus the two above.
CHECKED = list(PROBLEMS)
RACE_CHECKED = base.RACE_PROBLEMS + list(EXTRA_PROBLEMS)


@pytest.fixture(autouse=True)
def gpu_tiles(monkeypatch):
    """Every emulated launch in the test goes through _emu_gputiles."""
    monkeypatch.setattr(emu_backend.BACKEND, "module", gputiles)
    assert backend_for(deepconv.device(DEVICE)).module is gputiles
    yield


def problem_arrays(rng, name, dtype):
    """test_conv.problem_arrays over this file's problem table."""
    x_shape, w_shape, stride, padding, groups = PROBLEMS[name]
    y_shape = conv2d_output_shape(x_shape, w_shape, stride, padding, groups)
    return (base.normal(rng, x_shape, dtype), base.normal(rng, w_shape, dtype),
            base.normal(rng, (w_shape[0],), dtype), base.normal(rng, y_shape, dtype),
            dict(stride=stride, padding=padding, groups=groups))


def params_of(name):
    """test_conv.params_of over this file's problem table: the module's tuple."""
    x_shape, w_shape, stride, padding, groups = PROBLEMS[name]
    (sh, sw), (ph, pw) = base.pairs(stride), base.pairs(padding)
    _, _, p, q = conv2d_output_shape(x_shape, w_shape, stride, padding, groups)
    return (*x_shape, w_shape[0], *w_shape[2:], p, q, ph, pw, sh, sw, groups)


def test_module_makes_the_gpu_choices(dtype):
    dt = np.dtype(dtype).name
    # Split-K where only the GPU goal (chunks of >= 256 steps) splits...
    assert gputiles.conv2d_fprop_variant(params_of("3x3_split_k_gpu"), dt) == \
        "implicit_gemm_3x3+split_k"
    assert deepconv._emu.conv2d_fprop_variant(params_of("3x3_split_k_gpu"), dt) == \
        "implicit_gemm_3x3"
    # ...into 2 chunks (576 steps, chunks of >= 256): the workspace holds
    # splits x groups x M x N partial sums.
    m, n = 16, 16  # P*Q rows, K columns
    itemsize = np.dtype(dtype).itemsize
    assert gputiles.conv2d_fprop_workspace_bytes(params_of("3x3_split_k_gpu"), dt) == \
        2 * m * n * itemsize
    assert gputiles.conv2d_wgrad_variant(params_of("wgrad_split_k"), dt) == "implicit_gemm+split_k"
    assert gputiles.conv2d_dgrad_variant(params_of("1x1"), dt) == "implicit_gemm_stride1"
    assert gputiles.conv2d_fprop_variant(params_of("fc_split_k"), dt) == "implicit_gemm_fc+split_k"


@pytest.mark.parametrize("problem", CHECKED)
def test_fprop_dgrad_wgrad_match_reference(dtype, problem, rng):
    x, w, b, dy, geo = problem_arrays(rng, problem, dtype)
    s, p, g = geo["stride"], geo["padding"], geo["groups"]
    y = conv2d(on(DEVICE, x), on(DEVICE, w), on(DEVICE, b), relu=True, **geo)
    base.assert_close(y, np.maximum(base.conv_reference(x, w, b, s, p, g), 0), dtype, w[0].size)
    dx = conv2d_dgrad(on(DEVICE, dy), on(DEVICE, w), x.shape, **geo)
    base.assert_close(dx, base.dgrad_reference(dy, w, x.shape, s, p, g), dtype,
                      w.shape[0] * w.shape[2] * w.shape[3])
    dw, db = conv2d_wgrad(on(DEVICE, x), on(DEVICE, dy), w.shape, **geo)
    dw_ref, db_ref = base.wgrad_reference(x, dy, w.shape, s, p, g)
    base.assert_close(dw, dw_ref, dtype, dy[:, 0].size)
    base.assert_close(db, db_ref, dtype, dy[:, 0].size)


@pytest.mark.parametrize("problem", RACE_CHECKED)
def test_race_free(dtype, problem, rng):
    x, w, b, dy, geo = problem_arrays(rng, problem, dtype)
    x, w, b, dy = (on(DEVICE, a) for a in (x, w, b, dy))
    assert_race_free(lambda *a: conv2d(*a, relu=True, **geo), x, w, b, seeds=(1, 2))
    assert_race_free(lambda *a: conv2d_dgrad(*a, x.shape, **geo), dy, w, seeds=(1, 2))
    assert_race_free(lambda *a: conv2d_wgrad(*a, w.shape, **geo), x, dy, seeds=(1, 2))


# Winograd on the GPU build's path: its batched GEMMs staged on the 3x3
# tiles (the sm_80+ cp.async ring: ConvRunRowLoader's copy_async), U a row
# per filter; the emulator's own build runs them in place instead.
WINOGRAD_PROBLEMS = ["odd_hw", "k_c_not_tile_multiple", "groups2", "pad_h0_w2"]


@pytest.mark.parametrize("tile", wbase.TILES)
@pytest.mark.parametrize("problem", WINOGRAD_PROBLEMS)
def test_winograd_staged_matches_reference(problem, tile, rng):
    x, w, b, dy, geo = wbase.arrays(rng, problem, np.float32)
    pad, groups = geo["padding"], geo["groups"]
    dev = lambda a: on(DEVICE, a)  # noqa: E731
    y = conv2d(dev(x), dev(w), dev(b), relu=True, algorithm=tile, **geo)
    wbase.assert_winograd_close(y, np.maximum(base.conv_reference(x, w, b, 1, pad, groups), 0),
                                np.float32, w[0].size, tile)
    dx = conv2d_dgrad(dev(dy), dev(w), x.shape, algorithm=tile, **geo)
    wbase.assert_winograd_close(dx, base.dgrad_reference(dy, w, x.shape, 1, pad, groups),
                                np.float32, w.shape[0] // groups * 9, tile)
    dw, db = conv2d_wgrad(dev(x), dev(dy), w.shape, algorithm=tile, **geo)
    dw_ref, db_ref = base.wgrad_reference(x, dy, w.shape, 1, pad, groups)
    wbase.assert_winograd_close(dw, dw_ref, np.float32, dy[:, 0].size, tile)
    wbase.assert_winograd_close(db, db_ref, np.float32, dy[:, 0].size, tile)
    if problem == "groups2":
        assert_race_free(lambda *a: conv2d(*a, relu=True, algorithm=tile, **geo), dev(x), dev(w),
                         dev(b), seeds=(1, 2))
        assert_race_free(lambda *a: conv2d_dgrad(*a, x.shape, algorithm=tile, **geo), dev(dy),
                         dev(w), seeds=(1, 2))
        assert_race_free(lambda *a: conv2d_wgrad(*a, w.shape, algorithm=tile, **geo), dev(x),
                         dev(dy), seeds=(1, 2))
