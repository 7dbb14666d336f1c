"""deepconv.set_conv_precision("tf32"): the convolutions on tensor cores
(kernels/conv_mainloop.cuh's ConvMathTf32, emulated mma.sync by mma.sync).

The reference is float64 on TF32-rounded inputs (the kernels round both
operands with cvt.rna.tf32.f32 as they stage them), so the only error left is
float32 summation: bounded by (K + slack) * eps * sum |a| |b| for a reduction
of length K. The fp32 path must stay what it was, bit for bit.
"""

import numpy as np
import pytest

import deepconv
from deepconv.ops import conv2d, conv2d_dgrad, conv2d_wgrad
from deepconv.testing import assert_race_free

from conftest import assert_bitwise_equal, on
from test_conv import (DEVICE, PROBLEMS, conv_reference, dgrad_reference, module, params_of,
                       problem_arrays, wgrad_reference)

EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture
def tf32():
    before = deepconv.get_conv_precision()
    deepconv.set_conv_precision("tf32")
    yield
    deepconv.set_conv_precision(before)


def tf32_round(a):
    """cvt.rna.tf32.f32 in numpy: add half a TF32 ulp to the magnitude, truncate
    (the inputs here are finite and far from overflow)."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x1000) & 0xFFFFE000).astype(np.uint32).view(np.float32).astype(np.float64)


def assert_tf32_close(actual, exact, magnitude, k):
    actual = deepconv.to_numpy(actual).astype(np.float64)
    bound = (k + 16) * EPS32 * magnitude + 1e-30
    worst = np.max(np.abs(actual - exact) / bound)
    assert worst <= 1.0, f"error {worst:.2f}x the TF32 bound for K = {k}"


def reduction_lengths(problem):
    x_shape, w_shape, *_ = PROBLEMS[problem]
    n, k = x_shape[0], w_shape[0]
    cg, r, s = w_shape[1:]
    _, _, p, q = deepconv.ops.conv2d_output_shape(x_shape, w_shape, *PROBLEMS[problem][2:5])
    groups = PROBLEMS[problem][4]
    return {"fprop": cg * r * s, "dgrad": k // groups * r * s, "wgrad": n * p * q}


TF32_PROBLEMS = ["3x3_pad1", "3x3_groups2", "3x3_wide", "k_not_tile_multiple", "odd_hw_stride2",
                 "5x5_pad2_groups2", "1x1", "fc", "fc_split_k", "wgrad_split_k",
                 "dgrad_split_k"]


@pytest.mark.parametrize("problem", TF32_PROBLEMS)
def test_tf32_passes_against_rounded_float64(problem, rng, tf32):
    check_passes(problem, rng)


def check_passes(problem, rng):
    x, w, b, dy, geo = problem_arrays(rng, problem, np.float32)
    xr, wr, dyr = tf32_round(x), tf32_round(w), tf32_round(dy)
    k = reduction_lengths(problem)
    g = (geo["stride"], geo["padding"], geo["groups"])

    y = conv2d(on(DEVICE, x), on(DEVICE, w), on(DEVICE, b), relu=False, **geo)
    exact = conv_reference(xr, wr, b, *g)
    magnitude = conv_reference(np.abs(xr), np.abs(wr), np.abs(b), *g)
    assert_tf32_close(y, exact, magnitude, k["fprop"])

    dx = conv2d_dgrad(on(DEVICE, dy), on(DEVICE, w), x.shape, **geo)
    exact = dgrad_reference(dyr, wr, x.shape, *g)
    magnitude = dgrad_reference(np.abs(dyr), np.abs(wr), x.shape, *g)
    assert_tf32_close(dx, exact, magnitude, k["dgrad"])

    dw, db = conv2d_wgrad(on(DEVICE, x), on(DEVICE, dy), w.shape, **geo)
    exact, _ = wgrad_reference(xr, dyr, w.shape, *g)
    magnitude, _ = wgrad_reference(np.abs(xr), np.abs(dyr), w.shape, *g)
    assert_tf32_close(dw, exact, magnitude, k["wgrad"])
    # The bias gradient is a plain float sum, untouched by the precision.
    np.testing.assert_allclose(deepconv.to_numpy(db), dy.astype(np.float64).sum(axis=(0, 2, 3)),
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("problem", ["3x3_groups2", "3x3_wide", "fc_split_k", "wgrad_split_k",
                                     "odd_hw_stride2"])
def test_tf32_race_free(problem, rng, tf32):
    check_race_free(problem, rng)


def check_race_free(problem, rng):
    x, w, b, dy, geo = problem_arrays(rng, problem, np.float32)
    x, w, b, dy = (on(DEVICE, a) for a in (x, w, b, dy))
    assert_race_free(lambda *a: conv2d(*a, relu=True, **geo), x, w, b, seeds=(1,))
    assert_race_free(lambda *a: conv2d_dgrad(*a, x.shape, **geo), dy, w, seeds=(1,))
    assert_race_free(lambda *a: conv2d_wgrad(*a, w.shape, **geo), x, dy, seeds=(1,))


@pytest.mark.parametrize("problem", ["3x3_pad1", "fc_split_k", "1x1"])
def test_precision_switch_changes_only_float32(problem, rng):
    x, w, b, dy, geo = problem_arrays(rng, problem, np.float32)
    x, w, b, dy = (on(DEVICE, a) for a in (x, w, b, dy))
    x64, w64 = (on(DEVICE, deepconv.to_numpy(a).astype(np.float64)) for a in (x, w))
    assert deepconv.get_conv_precision() == "fp32"  # the default
    fp32 = conv2d(x, w, b, **geo)
    fp64 = conv2d(x64, w64, **geo)
    variant = module().conv2d_fprop_variant(params_of(problem), "float32")
    assert not variant.endswith("+tf32")
    deepconv.set_conv_precision("tf32")
    try:
        assert deepconv.get_conv_precision() == "tf32"
        assert module().conv2d_fprop_variant(params_of(problem), "float32") == variant + "+tf32"
        assert module().conv2d_fprop_variant(params_of(problem), "float64") == variant
        tf32 = conv2d(x, w, b, **geo)
        assert not np.array_equal(deepconv.to_numpy(tf32), deepconv.to_numpy(fp32))
        assert_bitwise_equal(conv2d(x64, w64, **geo), fp64)  # float64 never uses TF32
    finally:
        deepconv.set_conv_precision("fp32")
    assert_bitwise_equal(conv2d(x, w, b, **geo), fp32)


def test_set_conv_precision_rejects_bad_values():
    with pytest.raises(ValueError, match="precision: expected 'fp32' or 'tf32', got 'fp16'"):
        deepconv.set_conv_precision("fp16")
    with pytest.raises(TypeError, match="precision: expected a str"):
        deepconv.set_conv_precision(32)
    assert deepconv.get_conv_precision() == "fp32"
    with pytest.raises(ValueError, match="precision"):
        module().set_conv_precision("TF32")


# --- the GPU tiles' TF32 twins (8 warps of mma.sync over 128x128 blocks, fed by
# the 4-stage cp.async ring), through the test-only module _emu_gputiles ----------

GPU_TILE_PROBLEMS = ["3x3_pad1", "k_not_tile_multiple", "odd_hw_stride2", "fc_split_k",
                     "wgrad_split_k"]


@pytest.fixture
def gpu_tiles_tf32(monkeypatch):
    gputiles = pytest.importorskip("deepconv._emu_gputiles")
    from deepconv.backend import emu as emu_backend
    monkeypatch.setattr(emu_backend.BACKEND, "module", gputiles)
    gputiles.set_conv_precision("tf32")
    yield gputiles
    gputiles.set_conv_precision("fp32")


@pytest.mark.parametrize("problem", GPU_TILE_PROBLEMS)
def test_tf32_gpu_tiles(problem, rng, gpu_tiles_tf32):
    assert gpu_tiles_tf32.conv2d_fprop_variant(params_of(problem), "float32").endswith("+tf32")
    check_passes(problem, rng)


@pytest.mark.parametrize("problem", ["3x3_pad1", "fc_split_k"])
def test_tf32_gpu_tiles_race_free(problem, rng, gpu_tiles_tf32):
    check_race_free(problem, rng)


def test_winograd_stays_fp32_under_tf32(rng, tf32):
    """Winograd's transforms amplify TF32's operand rounding (F(4x4): ~8e-3 of
    the largest output), so its GEMMs keep fp32 FMAs under TF32 (bitwise the
    fp32 results), and `auto` picks the implicit GEMM on tensor cores."""
    x = rng.standard_normal((2, 32, 12, 12)).astype(np.float32)
    w = rng.standard_normal((24, 32, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 24, 12, 12)).astype(np.float32)
    geo = dict(padding=1)
    x, w, dy = (on(DEVICE, a) for a in (x, w, dy))
    for alg in ("winograd_4x4", "winograd_2x2"):
        tf = (conv2d(x, w, algorithm=alg, **geo), conv2d_dgrad(dy, w, x.shape, algorithm=alg, **geo),
              conv2d_wgrad(x, dy, w.shape, algorithm=alg, **geo)[0])
        assert deepconv.ops.conv2d_variant("fprop", x.shape, w.shape, algorithm=alg, **geo) == alg
        deepconv.set_conv_precision("fp32")
        fp = (conv2d(x, w, algorithm=alg, **geo), conv2d_dgrad(dy, w, x.shape, algorithm=alg, **geo),
              conv2d_wgrad(x, dy, w.shape, algorithm=alg, **geo)[0])
        deepconv.set_conv_precision("tf32")
        for a, b in zip(tf, fp):
            assert_bitwise_equal(a, b)
    for name in ("fprop", "dgrad", "wgrad"):
        variant = deepconv.ops.conv2d_variant(name, x.shape, w.shape, **geo)
        assert variant.startswith("implicit_gemm") and variant.endswith("+tf32"), (name, variant)
