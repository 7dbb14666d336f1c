"""Winograd 3x3 convolutions (F(4x4,3x3), F(2x2,3x3); csrc/kernels/conv_winograd.cuh)
against the float64 references of test_conv.py, PyTorch, numeric gradients,
the race checker; and the algorithm switch (argument, process default,
variant reporting, errors)."""

import numpy as np
import pytest

import deepconv
from deepconv import nn
from deepconv.ops import (
    conv2d,
    conv2d_dgrad,
    conv2d_output_shape,
    conv2d_variant,
    conv2d_wgrad,
    get_conv_algorithm,
    set_conv_algorithm,
)
from deepconv.testing import assert_gradient_close, assert_race_free, numeric_gradient

from conftest import assert_bitwise_equal, on
from test_conv import conv_reference, dgrad_reference, module, normal, wgrad_reference

DEVICE = "emu:0"
TILES = ["winograd_4x4", "winograd_2x2"]

# Named problem list: name -> (x shape, w shape, padding, groups); all 3x3, stride 1.
PROBLEMS = {
    "odd_hw": ((2, 5, 9, 7), (6, 5, 3, 3), 1, 1),
    "n1_c3": ((1, 3, 11, 10), (4, 3, 3, 3), 1, 1),
    # not multiples of the 16 transform lanes nor of the GEMM tiles
    "k_c_not_tile_multiple": ((2, 19, 10, 9), (21, 19, 3, 3), 1, 1),
    "pad0": ((2, 4, 9, 10), (5, 4, 3, 3), 0, 1),
    "pad2": ((1, 6, 7, 8), (5, 6, 3, 3), 2, 1),
    "pad_h0_w2": ((2, 4, 6, 5), (3, 4, 3, 3), (0, 2), 1),
    "groups2": ((2, 8, 10, 10), (6, 4, 3, 3), 1, 2),
    "smaller_than_tile": ((2, 4, 3, 2), (5, 4, 3, 3), 1, 1),
    # tiles spanning images within one 16-lane transform run
    "many_tiles": ((3, 17, 13, 13), (18, 17, 3, 3), 1, 1),
    # The in-place GEMM's tiles on the emulator (ops/conv_winograd.cu run_gemm),
    # rows per batch: 33-64 rows in 56-row blocks (7-row thread tiles): F(4x4)
    # fprop (36 tiles x 128 channels), dgrad (36 tiles x 128 filters), wgrad
    # (rows = 8 channels: 32-row blocks, 128 tiles reduced)
    "short_deep_fprop": ((9, 128, 8, 8), (16, 128, 3, 3), 1, 1),
    "short_deep_dgrad": ((9, 16, 8, 8), (128, 16, 3, 3), 1, 1),
    "short_deep_wgrad": ((2, 8, 32, 32), (40, 8, 3, 3), 1, 1),
    # ... 60 rows, which 64-row blocks pad less (8-row thread tiles)
    "rows60": ((15, 8, 8, 8), (24, 8, 3, 3), 1, 1),
    # more than 64 rows that 112-row blocks pad less than 128-row ones: 75
    # (F(4x4)) / 300 (F(2x2)) tiles; wgrad: 72 channels
    "deep_fprop": ((3, 64, 20, 20), (8, 64, 3, 3), 1, 1),
    "deep_dgrad": ((3, 8, 20, 20), (64, 8, 3, 3), 1, 1),
    "deep_wgrad": ((3, 72, 20, 20), (8, 72, 3, 3), 1, 1),
    # ... and rows that 128-row blocks pad less: 121 / 484 tiles; wgrad: 120
    # channels
    "deep128_fprop": ((1, 64, 44, 44), (8, 64, 3, 3), 1, 1),
    "deep128_dgrad": ((1, 8, 44, 44), (64, 8, 3, 3), 1, 1),
    "deep128_wgrad": ((3, 120, 20, 20), (8, 120, 3, 3), 1, 1),
}


def arrays(rng, name, dtype):
    x_shape, w_shape, padding, groups = PROBLEMS[name]
    y_shape = conv2d_output_shape(x_shape, w_shape, 1, padding, groups)
    geo = dict(stride=1, padding=padding, groups=groups)
    return (normal(rng, x_shape, dtype), normal(rng, w_shape, dtype),
            normal(rng, (w_shape[0],), dtype), normal(rng, y_shape, dtype), geo)


def assert_winograd_close(actual, expected, dtype, reduction, tile):
    """Error bound relative to the Cauchy-Schwarz bound of one output, which
    for x, w, dy ~ N(0, 1) is about the reduction length (||x window|| *
    ||w filter|| ~ sqrt(n) * sqrt(n)). Measured (README, "3x3 convolution
    algorithms"): about 1.3e-6 for F(4x4) in float32, 1e-7 for F(2x2) and
    the implicit GEMM."""
    actual = deepconv.to_numpy(actual)
    assert actual.dtype == dtype and actual.shape == expected.shape
    if dtype == np.float64:
        tol = 1e-14
    else:
        tol = 1e-5 if tile == "winograd_4x4" else 1e-6
    error = np.max(np.abs(actual - expected)) / reduction
    assert error < tol, f"max |error| / reduction = {error:.3g} >= {tol:.3g}"


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("problem", PROBLEMS)
def test_passes_match_reference(dtype, problem, tile, rng):
    x, w, b, dy, geo = arrays(rng, problem, dtype)
    pad, groups = geo["padding"], geo["groups"]
    y = conv2d(on(DEVICE, x), on(DEVICE, w), on(DEVICE, b), relu=True, algorithm=tile, **geo)
    assert_winograd_close(y, np.maximum(conv_reference(x, w, b, 1, pad, groups), 0), dtype,
                          w[0].size, tile)
    dx = conv2d_dgrad(on(DEVICE, dy), on(DEVICE, w), x.shape, algorithm=tile, **geo)
    assert_winograd_close(dx, dgrad_reference(dy, w, x.shape, 1, pad, groups), dtype,
                          w.shape[0] // groups * 9, tile)
    dw, db = conv2d_wgrad(on(DEVICE, x), on(DEVICE, dy), w.shape, algorithm=tile, **geo)
    dw_ref, db_ref = wgrad_reference(x, dy, w.shape, 1, pad, groups)
    assert_winograd_close(dw, dw_ref, dtype, dy[:, 0].size, tile)
    assert_winograd_close(db, db_ref, dtype, dy[:, 0].size, tile)


def test_numeric_gradient_through_layer(rng):
    layer = nn.Conv2d(4, 6, 3, padding=1, groups=2, algorithm="winograd", dtype="float64",
                      device=DEVICE, rng=rng)
    assert layer.algorithm == "winograd"
    x = rng.standard_normal((2, 4, 6, 5))
    r = rng.standard_normal((2, 6, 6, 5))

    def loss():
        y = layer.forward(deepconv.asarray(x, device=DEVICE))
        return np.sum(deepconv.to_numpy(y) * r)

    loss()
    dx = layer.backward(deepconv.asarray(r, device=DEVICE))
    for name, value in (("dx", dx), ("weight", layer.grads["weight"]),
                        ("bias", layer.grads["bias"])):
        target = x if name == "dx" else layer.params[name]
        assert_gradient_close(np.array(deepconv.to_numpy(value)), numeric_gradient(loss, target),
                              rtol=1e-6, atol=1e-7, name=name)


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("problem", ["groups2", "k_c_not_tile_multiple", "short_deep_wgrad",
                                     "deep_wgrad", "deep128_wgrad"])
def test_race_free_and_repeatable(problem, tile, rng):
    x, w, b, dy, geo = arrays(rng, problem, np.float32)
    x, w, b, dy = (on(DEVICE, a) for a in (x, w, b, dy))
    runs = [
        (lambda *a: conv2d(*a, relu=True, algorithm=tile, **geo), (x, w, b)),
        (lambda *a: conv2d_dgrad(*a, x.shape, algorithm=tile, **geo), (dy, w)),
        (lambda *a: conv2d_wgrad(*a, w.shape, algorithm=tile, **geo), (x, dy)),
    ]
    for fn, args in runs:
        assert_race_free(fn, *args, seeds=(1, 2))
        first, second = fn(*args), fn(*args)
        for a, b_ in zip(first if isinstance(first, tuple) else (first,),
                         second if isinstance(second, tuple) else (second,)):
            assert_bitwise_equal(a, b_)


@pytest.mark.parametrize("tile", TILES)
def test_matches_pytorch(tile, rng):
    torch = pytest.importorskip("torch")
    x, w, b, _, geo = arrays(rng, "groups2", np.float64)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=geo["padding"], groups=geo["groups"])
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    y = conv2d(on(DEVICE, x), on(DEVICE, w), on(DEVICE, b), algorithm=tile, **geo)
    dx = conv2d_dgrad(on(DEVICE, dy), on(DEVICE, w), x.shape, algorithm=tile, **geo)
    dw, db = conv2d_wgrad(on(DEVICE, x), on(DEVICE, dy), w.shape, algorithm=tile, **geo)
    for ours, theirs in ((y, ty), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        np.testing.assert_allclose(deepconv.to_numpy(ours), theirs.detach().numpy(),
                                   rtol=1e-10, atol=1e-10)


# --- the algorithm switch ---------------------------------------------------------------


@pytest.fixture
def default_algorithm():
    """Restores the process-wide default after a test that changes it."""
    before = get_conv_algorithm()
    yield
    set_conv_algorithm(before)


def test_variants_report_the_choice():
    # the emulator's auto rule (csrc/ops/conv_winograd.cu)
    big = ((1, 16, 28, 28), (16, 16, 3, 3))  # 49 F(4x4) tiles, 16 channels
    small = ((1, 16, 8, 8), (16, 16, 3, 3))  # 4 F(4x4) tiles, 16 F(2x2) tiles
    tiny = ((1, 16, 4, 4), (16, 16, 3, 3))  # 4 F(2x2) tiles: too few for either
    for pass_name in ("fprop", "dgrad", "wgrad"):
        assert conv2d_variant(pass_name, *big, padding=1) == "winograd_4x4"
        assert conv2d_variant(pass_name, *small, padding=1) == "winograd_2x2"
        assert conv2d_variant(pass_name, *tiny, padding=1).startswith("implicit_gemm")
        assert conv2d_variant(pass_name, *big, padding=1,
                              algorithm="implicit_gemm").startswith("implicit_gemm")
        assert conv2d_variant(pass_name, *small, padding=1, algorithm="winograd") == "winograd_2x2"
        assert conv2d_variant(pass_name, *big, padding=1,
                              algorithm="winograd_2x2") == "winograd_2x2"
        # 16 F(4x4) tiles: F(4x4) for few filters, F(2x2) when writing 36 K*C
        # transformed filters would cost more than the GEMM saves
        assert conv2d_variant(pass_name, (4, 16, 8, 8), (16, 16, 3, 3),
                              padding=1) == "winograd_4x4"
        assert conv2d_variant(pass_name, (1, 512, 14, 14), (512, 512, 3, 3),
                              padding=1) == "winograd_2x2"
        # outputs under 8 on a side: F(2x2), whatever the tile count
        assert conv2d_variant(pass_name, (16, 16, 4, 4), (16, 16, 3, 3),
                              padding=1) == "winograd_2x2"
    # an RGB input: the implicit GEMM for fprop only; dgrad reduces over the
    # 16 filters, wgrad over the tiles
    rgb = ((1, 3, 28, 28), (16, 3, 3, 3))
    assert conv2d_variant("dgrad", *rgb, padding=1) == "winograd_4x4"
    assert conv2d_variant("fprop", *rgb, padding=1) == "implicit_gemm_3x3"
    assert conv2d_variant("wgrad", *rgb, padding=1) == "winograd_4x4"
    assert conv2d_variant("fprop", (1, 8, 28, 28), (16, 8, 3, 3), padding=1) == "implicit_gemm_3x3"
    assert conv2d_variant("dgrad", (1, 16, 28, 28), (8, 16, 3, 3),
                          padding=1) == "implicit_gemm_3x3"
    m, params = module(), (1, 16, 28, 28, 16, 3, 3, 28, 28, 1, 1, 1, 1, 1)
    # V (36 positions x 49 tiles x 16 channels), M (the same with 16 filters), U (16 x 16 each)
    need = 4 * 36 * (49 * 16 * 2 + 16 * 16)
    assert need <= m.conv2d_fprop_workspace_bytes(params, "float32", "winograd_4x4") < need + 1024
    assert m.conv2d_fprop_workspace_bytes(params, "float32", "implicit_gemm") == 0


def test_process_default(default_algorithm, rng):
    shapes = ((1, 16, 4, 4), (16, 16, 3, 3))  # auto: the implicit GEMM
    assert get_conv_algorithm() == "auto"
    assert set_conv_algorithm("winograd_4x4") == "auto"
    assert deepconv.get_conv_algorithm() == "winograd_4x4"
    assert conv2d_variant("dgrad", *shapes, padding=1) == "winograd_4x4"
    x, w = normal(rng, shapes[0], np.float32), normal(rng, shapes[1], np.float32)
    forced = conv2d(on(DEVICE, x), on(DEVICE, w), padding=1)
    assert_bitwise_equal(forced, conv2d(on(DEVICE, x), on(DEVICE, w), padding=1,
                                        algorithm="winograd_4x4"))
    # an explicit argument wins over the default
    assert conv2d_variant("dgrad", *shapes, padding=1, algorithm="auto") == "implicit_gemm_3x3"
    assert deepconv.set_conv_algorithm("auto") == "winograd_4x4"
    # a stride-2 layer under a Winograd default is an error, not a silent fallback
    set_conv_algorithm("winograd")
    with pytest.raises(ValueError, match="^algorithm: 'winograd' cannot run .*stride is"):
        conv2d(on(DEVICE, x), on(DEVICE, w), stride=2, padding=1)


BAD = {
    "stride2": (dict(stride=2, padding=1), ValueError, r"^algorithm: 'winograd' cannot run "
                r"this convolution: the stride is \(2, 2\), not 1"),
    "pad3": (dict(padding=3), ValueError, r"the padding \(3, 3\) is larger than 2"),
    "name": (dict(padding=1, algorithm="fft"), ValueError, r"^algorithm: expected one of"),
    "type": (dict(padding=1, algorithm=4), TypeError, r"^algorithm: expected a str"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_algorithm(case):
    kwargs, error, message = BAD[case]
    kwargs = {"algorithm": "winograd", **kwargs}
    x = deepconv.zeros((1, 4, 9, 9), np.float32, device=DEVICE)
    w = deepconv.zeros((4, 4, 3, 3), np.float32, device=DEVICE)
    y_shape = conv2d_output_shape(x.shape, w.shape, kwargs.get("stride", 1), kwargs["padding"])
    dy = deepconv.zeros(y_shape, np.float32, device=DEVICE)
    with pytest.raises(error, match=message):
        conv2d(x, w, **kwargs)
    with pytest.raises(error, match=message):
        conv2d_dgrad(dy, w, x.shape, **kwargs)
    with pytest.raises(error, match=message):
        conv2d_wgrad(x, dy, w.shape, **kwargs)
    with pytest.raises(error, match=message):
        nn.Conv2d(4, 4, 3, device=DEVICE, **kwargs)


def test_bad_algorithm_elsewhere(default_algorithm):
    with pytest.raises(ValueError, match=r"^algorithm: 'winograd' cannot run .*5x5, not 3x3"):
        conv2d_variant("fprop", (1, 4, 9, 9), (4, 4, 5, 5), algorithm="winograd")
    with pytest.raises(ValueError, match=r"^algorithm: expected one of"):
        set_conv_algorithm("cudnn")
    assert get_conv_algorithm() == "auto"
    with pytest.raises(ValueError, match=r"^pass_name: expected"):
        conv2d_variant("bprop", (1, 4, 9, 9), (4, 4, 3, 3))
    # the launchers check too (the extension module is callable directly)
    m, stride2 = module(), (1, 4, 9, 9, 4, 3, 3, 5, 5, 1, 1, 2, 2, 1)
    with pytest.raises(ValueError, match=r"^conv2d_fprop: algorithm 'winograd' cannot run this "
                                         r"problem: the stride is not 1"):
        m.conv2d_fprop_variant(stride2, "float32", "winograd")
    with pytest.raises(ValueError, match=r"^algorithm: expected 'auto'"):
        m.conv2d_wgrad_variant(stride2, "float32", "fast")
    params = (1, 4, 9, 9, 4, 3, 3, 9, 9, 1, 1, 1, 1, 1)
    x = np.zeros((1, 4, 9, 9), np.float32)
    with pytest.raises(ValueError, match="workspace too small"):
        m.conv2d_fprop(params, x.ctypes.data, x.ctypes.data, 0, x.ctypes.data, False,
                       x.ctypes.data, 16, "float32", 0, "winograd")
