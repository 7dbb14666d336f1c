"""deepconv.ops.conv2d / conv2d_dgrad / conv2d_wgrad against a float64 numpy
reference (and PyTorch where it is installed), on the emulator."""

import numpy as np
import pytest

import deepconv
from deepconv.backend import backend_for
from deepconv.ops import conv2d, conv2d_dgrad, conv2d_output_shape, conv2d_wgrad
from deepconv.testing import assert_gradient_close, assert_race_free, numeric_gradient

from conftest import assert_bitwise_equal, on

# Named problem list: name -> (x shape, w shape, stride, padding, groups).
PROBLEMS = {
    "1x1": ((2, 8, 5, 6), (12, 8, 1, 1), 1, 0, 1),
    "3x3_pad1": ((2, 5, 7, 9), (6, 5, 3, 3), 1, 1, 1),
    "3x3_pad0": ((2, 4, 6, 5), (7, 4, 3, 3), 1, 0, 1),
    "3x3_groups2": ((2, 8, 6, 6), (6, 4, 3, 3), 1, 1, 2),
    "5x5_pad2_groups2": ((2, 6, 9, 8), (10, 3, 5, 5), 1, 2, 2),
    "11x11_stride4_227": ((1, 3, 227, 227), (4, 3, 11, 11), 4, 0, 1),
    "odd_hw_stride2": ((3, 3, 13, 11), (5, 3, 3, 3), 2, 1, 1),
    "asymmetric": ((2, 3, 10, 9), (4, 3, 3, 2), (2, 1), (1, 0), 1),
    "n1_c3": ((1, 3, 8, 8), (4, 3, 3, 3), 1, 1, 1),
    "k_not_tile_multiple": ((2, 16, 10, 10), (70, 16, 3, 3), 1, 1, 1),
    "3x3_wide": ((1, 80, 6, 5), (72, 80, 3, 3), 1, 1, 1),  # > 64 channels: wide tiles
    "fc": ((3, 16, 6, 6), (10, 16, 6, 6), 1, 0, 1),
    "fc_groups2": ((2, 8, 3, 3), (6, 4, 3, 3), 1, 0, 2),
    "fc_split_k": ((2, 64, 8, 8), (8, 64, 8, 8), 1, 0, 1),
    "wgrad_split_k": ((4, 4, 32, 32), (8, 4, 3, 3), 1, 1, 1),
    "dgrad_split_k": ((1, 4, 4, 4), (512, 4, 3, 3), 1, 1, 1),
}
DEVICE = "emu:0"


def pairs(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def windows(x, w_shape, stride, padding):
    """x (N, C, H, W) float64 -> (N, C, P, Q, R, S) views of the padded input."""
    (sh, sw), (ph, pw) = pairs(stride), pairs(padding)
    r, s = w_shape[2:]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (r, s), axis=(2, 3))
    return win[:, :, ::sh, ::sw]


def conv_reference(x, w, b, stride, padding, groups):
    win = windows(x, w.shape, stride, padding)
    n, c, p, q, r, s = win.shape
    k = w.shape[0]
    win = win.reshape(n, groups, c // groups, p, q, r, s)
    wg = w.astype(np.float64).reshape(groups, k // groups, c // groups, r, s)
    y = np.einsum("ngcpqrs,gkcrs->ngkpq", win, wg).reshape(n, k, p, q)
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y


def dgrad_reference(dy, w, x_shape, stride, padding, groups):
    (sh, sw), (ph, pw) = pairs(stride), pairs(padding)
    n, c, h, wd = x_shape
    k, cg, r, s = w.shape
    _, _, p, q = dy.shape
    dyg = dy.astype(np.float64).reshape(n, groups, k // groups, p, q)
    wg = w.astype(np.float64).reshape(groups, k // groups, cg, r, s)
    dxp = np.zeros((n, groups, cg, h + 2 * ph, wd + 2 * pw))
    for i in range(r):
        for j in range(s):
            dxp[:, :, :, i:i + sh * p:sh, j:j + sw * q:sw] += np.einsum(
                "ngkpq,gkc->ngcpq", dyg, wg[..., i, j])
    return dxp[:, :, :, ph:ph + h, pw:pw + wd].reshape(x_shape)


def wgrad_reference(x, dy, w_shape, stride, padding, groups):
    win = windows(x, w_shape, stride, padding)
    n, c, p, q, r, s = win.shape
    k = w_shape[0]
    win = win.reshape(n, groups, c // groups, p, q, r, s)
    dyg = dy.astype(np.float64).reshape(n, groups, k // groups, p, q)
    dw = np.einsum("ngcpqrs,ngkpq->gkcrs", win, dyg).reshape(w_shape)
    return dw, dy.astype(np.float64).sum(axis=(0, 2, 3))


def normal(rng, shape, dtype):
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def assert_close(actual, expected, dtype, reduction):
    actual = deepconv.to_numpy(actual)
    assert actual.dtype == dtype and actual.shape == expected.shape
    if dtype == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * np.sqrt(reduction))
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-5 * np.sqrt(reduction))


def problem_arrays(rng, name, dtype):
    x_shape, w_shape, stride, padding, groups = PROBLEMS[name]
    y_shape = conv2d_output_shape(x_shape, w_shape, stride, padding, groups)
    return (normal(rng, x_shape, dtype), normal(rng, w_shape, dtype),
            normal(rng, (w_shape[0],), dtype), normal(rng, y_shape, dtype),
            dict(stride=stride, padding=padding, groups=groups))


def module():
    return backend_for(deepconv.device(DEVICE)).module


def params_of(name):
    x_shape, w_shape, stride, padding, groups = PROBLEMS[name]
    (sh, sw), (ph, pw) = pairs(stride), pairs(padding)
    _, _, p, q = conv2d_output_shape(x_shape, w_shape, stride, padding, groups)
    return (*x_shape, w_shape[0], *w_shape[2:], p, q, ph, pw, sh, sw, groups)


# --- against the numpy reference ---------------------------------------------------


@pytest.mark.parametrize("problem", PROBLEMS)
def test_fprop_matches_reference(dtype, problem, rng):
    x, w, b, _, geo = problem_arrays(rng, problem, dtype)
    y = conv2d(on(DEVICE, x), on(DEVICE, w), **geo)
    assert_close(y, conv_reference(x, w, None, geo["stride"], geo["padding"], geo["groups"]),
                 dtype, w[0].size)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_dgrad_matches_reference(dtype, problem, rng):
    x, w, _, dy, geo = problem_arrays(rng, problem, dtype)
    dx = conv2d_dgrad(on(DEVICE, dy), on(DEVICE, w), x.shape, **geo)
    expected = dgrad_reference(dy, w, x.shape, geo["stride"], geo["padding"], geo["groups"])
    assert_close(dx, expected, dtype, w.shape[0] * w.shape[2] * w.shape[3])


@pytest.mark.parametrize("problem", PROBLEMS)
def test_wgrad_matches_reference(dtype, problem, rng):
    x, w, _, dy, geo = problem_arrays(rng, problem, dtype)
    dw, db = conv2d_wgrad(on(DEVICE, x), on(DEVICE, dy), w.shape, **geo)
    dw_ref, db_ref = wgrad_reference(x, dy, w.shape, geo["stride"], geo["padding"], geo["groups"])
    assert_close(dw, dw_ref, dtype, dy[:, 0].size)
    assert_close(db, db_ref, dtype, dy[:, 0].size)


@pytest.mark.parametrize("problem", ["3x3_pad1", "5x5_pad2_groups2", "fc_split_k", "odd_hw_stride2"])
def test_fprop_fused_bias_relu(device, dtype, problem, rng):
    x, w, b, _, geo = problem_arrays(rng, problem, dtype)
    ref = conv_reference(x, w, b, geo["stride"], geo["padding"], geo["groups"])
    y = conv2d(on(device, x), on(device, w), on(device, b), relu=True, **geo)
    assert deepconv.device_of(y) == device
    assert_close(y, np.maximum(ref, 0), dtype, w[0].size)
    assert (deepconv.to_numpy(y) >= 0).all()
    y = conv2d(on(device, x), on(device, w), on(device, b), **geo)
    assert_close(y, ref, dtype, w[0].size)


def test_outputs_into_out_arrays(dtype, rng):
    x, w, b, dy, geo = problem_arrays(rng, "5x5_pad2_groups2", dtype)
    dev = deepconv.device(DEVICE)
    y = deepconv.zeros(dy.shape, dtype, device=dev)
    assert conv2d(on(dev, x), on(dev, w), on(dev, b), out=y, **geo) is y
    dx = deepconv.zeros(x.shape, dtype, device=dev)
    assert conv2d_dgrad(on(dev, dy), on(dev, w), x.shape, out=dx, **geo) is dx
    dw = deepconv.zeros(w.shape, dtype, device=dev)
    db = deepconv.zeros(b.shape, dtype, device=dev)
    assert conv2d_wgrad(on(dev, x), on(dev, dy), w.shape, out=dw, out_bias=db, **geo) == (dw, db)
    dw2, none = conv2d_wgrad(on(dev, x), on(dev, dy), w.shape, with_bias=False, **geo)
    assert none is None
    assert_bitwise_equal(dw2, dw)


@pytest.mark.parametrize("problem", ["fc", "1x1"])
def test_unaligned_views(problem, rng):
    # Arrays that start 4 bytes into their buffer: the 16-byte vector loads
    # of row operands must fall back to scalar loads.
    x, w, b, dy, geo = problem_arrays(rng, problem, np.float32)

    def shifted(a):
        base = deepconv.zeros(a.size + 1, np.float32, device=DEVICE)
        view = base[1:].reshape(a.shape)
        view[...] = a
        return view

    xs, ws = shifted(x), shifted(w)
    assert xs.ctypes.data % 16 != 0
    y = conv2d(xs, ws, shifted(b), **geo)
    assert_close(y, conv_reference(x, w, b, geo["stride"], geo["padding"], geo["groups"]),
                 np.float32, w[0].size)
    dx = conv2d_dgrad(shifted(dy), ws, x.shape, **geo)
    assert_close(dx, dgrad_reference(dy, w, x.shape, geo["stride"], geo["padding"], geo["groups"]),
                 np.float32, w.shape[0] * w.shape[2] * w.shape[3])


def test_batch_of_zero(dtype):
    x = deepconv.zeros((0, 3, 5, 5), dtype, device=DEVICE)
    w = deepconv.asarray(np.ones((4, 3, 3, 3), dtype), device=DEVICE)
    assert conv2d(x, w, padding=1).shape == (0, 4, 5, 5)
    dy = deepconv.zeros((0, 4, 5, 5), dtype, device=DEVICE)
    assert conv2d_dgrad(dy, w, x.shape, padding=1).shape == x.shape
    dw, db = conv2d_wgrad(x, dy, w.shape, padding=1)
    assert not deepconv.to_numpy(dw).any() and not deepconv.to_numpy(db).any()


def test_variants_are_chosen(dtype):
    m, dt = module(), np.dtype(dtype).name
    assert m.conv2d_fprop_variant(params_of("3x3_pad1"), dt) == "implicit_gemm_3x3"
    assert m.conv2d_fprop_variant(params_of("3x3_pad0"), dt) == "implicit_gemm"
    assert m.conv2d_fprop_variant(params_of("fc"), dt) == "implicit_gemm_fc"
    assert m.conv2d_fprop_variant(params_of("fc_split_k"), dt) == "implicit_gemm_fc+split_k"
    assert m.conv2d_dgrad_variant(params_of("3x3_groups2"), dt) == "implicit_gemm_3x3"
    assert m.conv2d_dgrad_variant(params_of("1x1"), dt) == "implicit_gemm_stride1"
    assert m.conv2d_dgrad_variant(params_of("odd_hw_stride2"), dt) == "implicit_gemm"
    assert m.conv2d_dgrad_variant(params_of("fc"), dt) == "implicit_gemm_fc"
    assert m.conv2d_dgrad_variant(params_of("dgrad_split_k"), dt) == "implicit_gemm_3x3+split_k"
    assert m.conv2d_wgrad_variant(params_of("wgrad_split_k"), dt) == "implicit_gemm+split_k"
    assert m.conv2d_wgrad_workspace_bytes(params_of("wgrad_split_k"), dt) > 0
    assert m.conv2d_fprop_workspace_bytes(params_of("3x3_pad1"), dt) == 0


def test_output_shape():
    assert conv2d_output_shape((10, 3, 227, 227), (96, 3, 11, 11), stride=4) == (10, 96, 55, 55)
    assert conv2d_output_shape((1, 64, 224, 224), (64, 64, 3, 3), padding=1) == (1, 64, 224, 224)
    assert conv2d_output_shape((2, 3, 10, 9), (4, 3, 3, 2), (2, 1), (1, 0)) == (2, 4, 5, 8)
    with pytest.raises(ValueError, match="^w_shape: filter height 5 is larger than the padded input"):
        conv2d_output_shape((1, 1, 3, 3), (1, 1, 5, 1))
    with pytest.raises(ValueError, match="^stride: expected positive"):
        conv2d_output_shape((1, 1, 3, 3), (1, 1, 1, 1), stride=0)


# --- gradients, determinism, races -------------------------------------------------


@pytest.mark.parametrize("geo", [dict(stride=1, padding=1, groups=1),
                                 dict(stride=2, padding=(1, 0), groups=2)], ids=["s1p1", "s2g2"])
def test_numeric_gradient_float64(geo, rng):
    # loss = sum(conv2d(x, w, b) * r); its gradients are dgrad(r), wgrad(r).
    x = rng.standard_normal((2, 4, 5, 5))
    w = rng.standard_normal((4, 4 // geo["groups"], 3, 3))
    b = rng.standard_normal(4)
    r_shape = conv2d_output_shape(x.shape, w.shape, geo["stride"], geo["padding"], geo["groups"])
    r = rng.standard_normal(r_shape)

    def loss():
        y = conv2d(deepconv.asarray(x, device=DEVICE), deepconv.asarray(w, device=DEVICE),
                   deepconv.asarray(b, device=DEVICE), **geo)
        return np.sum(deepconv.to_numpy(y) * r)

    dr = deepconv.asarray(r, device=DEVICE)
    dx = conv2d_dgrad(dr, deepconv.asarray(w, device=DEVICE), x.shape, **geo)
    dw, db = conv2d_wgrad(deepconv.asarray(x, device=DEVICE), dr, w.shape, **geo)
    assert_gradient_close(dx, numeric_gradient(loss, x), rtol=1e-6, atol=1e-7, name="dx")
    assert_gradient_close(dw, numeric_gradient(loss, w), rtol=1e-6, atol=1e-7, name="dw")
    assert_gradient_close(db, numeric_gradient(loss, b), rtol=1e-6, atol=1e-7, name="db")


@pytest.mark.parametrize("problem", ["wgrad_split_k", "fc_split_k", "5x5_pad2_groups2"])
def test_bitwise_repeatable(dtype, problem, rng):
    x, w, b, dy, geo = problem_arrays(rng, problem, dtype)
    x, w, b, dy = (on(DEVICE, a) for a in (x, w, b, dy))
    first = conv2d_wgrad(x, dy, w.shape, **geo)
    second = conv2d_wgrad(x, dy, w.shape, **geo)
    assert_bitwise_equal(first[0], second[0])
    assert_bitwise_equal(first[1], second[1])
    assert_bitwise_equal(conv2d(x, w, b, **geo), conv2d(x, w, b, **geo))
    assert_bitwise_equal(conv2d_dgrad(dy, w, x.shape, **geo), conv2d_dgrad(dy, w, x.shape, **geo))


# One problem per kernel variant: 3x3 (narrow and wide tiles), general,
# stride-1 dgrad, fc, split-K.
RACE_PROBLEMS = ["3x3_groups2", "odd_hw_stride2", "1x1", "fc_groups2", "fc_split_k",
                 "wgrad_split_k", "dgrad_split_k", "3x3_wide", "k_not_tile_multiple"]


@pytest.mark.parametrize("problem", RACE_PROBLEMS)
def test_race_free(problem, rng):
    x, w, b, dy, geo = problem_arrays(rng, problem, np.float32)
    x, w, b, dy = (on(DEVICE, a) for a in (x, w, b, dy))
    assert_race_free(lambda *a: conv2d(*a, relu=True, **geo), x, w, b, seeds=(1, 2))
    assert_race_free(lambda *a: conv2d_dgrad(*a, x.shape, **geo), dy, w, seeds=(1, 2))
    assert_race_free(lambda *a: conv2d_wgrad(*a, w.shape, **geo), x, dy, seeds=(1, 2))


# --- PyTorch parity ------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["3x3_pad1", "5x5_pad2_groups2", "asymmetric", "fc",
                                     "11x11_stride4_227"])
def test_matches_pytorch(problem, rng):
    torch = pytest.importorskip("torch")
    x, w, b, _, geo = problem_arrays(rng, problem, np.float64)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=geo["stride"], padding=geo["padding"],
                                    groups=geo["groups"])
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    dev = deepconv.device(DEVICE)
    y = conv2d(on(dev, x), on(dev, w), on(dev, b), **geo)
    dx = conv2d_dgrad(on(dev, dy), on(dev, w), x.shape, **geo)
    dw, db = conv2d_wgrad(on(dev, x), on(dev, dy), w.shape, **geo)
    for ours, theirs in ((y, ty), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        np.testing.assert_allclose(deepconv.to_numpy(ours), theirs.detach().numpy(),
                                   rtol=1e-10, atol=1e-10)


# --- bad input -------------------------------------------------------------------------


def _arrays():
    def z(shape, dtype=np.float32, device="emu:1"):
        return deepconv.zeros(shape, dtype, device=device)

    readonly = z((2, 4, 6, 6))
    readonly.flags.writeable = False
    return {
        "x": z((2, 4, 6, 6)), "w": z((4, 4, 3, 3)), "b": z(4), "y": z((2, 4, 6, 6)),
        "x3": z((4, 6, 6)), "x64": z((2, 4, 6, 6), np.float64), "ints": z((2, 4, 6, 6), np.int32),
        "w_groups": z((4, 2, 3, 3)), "w5": z((5, 2, 3, 3)), "w_big": z((4, 4, 9, 9)),
        "other_device": z((4, 4, 3, 3), device="emu:2"), "readonly": readonly,
        "strided": z((2, 4, 6, 12))[..., ::2], "b5": z(5), "dy_bad": z((2, 4, 5, 5)),
    }


BAD_CALLS = {
    "x_list": (lambda a: conv2d([1.0], a["w"]), TypeError, r"^x: expected a numpy.ndarray"),
    "x_3d": (lambda a: conv2d(a["x3"], a["w"]), ValueError, r"^x: expected 4 dimensions"),
    "x_int": (lambda a: conv2d(a["ints"], a["w"]), TypeError, r"^x: expected dtype float32"),
    "x_strided": (lambda a: conv2d(a["strided"], a["w"]), ValueError, r"^x: expected a C-contiguous"),
    "w_dtype": (lambda a: conv2d(a["x64"], a["w"]), TypeError, r"^w: expected the dtype of x"),
    "w_channels": (lambda a: conv2d(a["x"], a["w_groups"]), ValueError,
                   r"^w: expected 4 input channels per filter"),
    "groups_c": (lambda a: conv2d(a["x"], a["w"], groups=3), ValueError,
                 r"^groups: 3 does not divide the 4 input channels"),
    "groups_k": (lambda a: conv2d(a["x"], a["w5"], groups=2), ValueError,
                 r"^groups: 2 does not divide the 5 filters"),
    "groups_zero": (lambda a: conv2d(a["x"], a["w"], groups=0), ValueError, r"^groups: expected a positive"),
    "filter_too_big": (lambda a: conv2d(a["x"], a["w_big"], padding=1), ValueError,
                       r"^w: filter height 9 is larger than the padded input"),
    "stride_zero": (lambda a: conv2d(a["x"], a["w"], stride=0), ValueError, r"^stride: expected positive"),
    "stride_negative": (lambda a: conv2d(a["x"], a["w"], stride=(1, -2)), ValueError, r"^stride:"),
    "stride_float": (lambda a: conv2d(a["x"], a["w"], stride=1.5), TypeError, r"^stride: expected an int"),
    "padding_negative": (lambda a: conv2d(a["x"], a["w"], padding=-1), ValueError,
                         r"^padding: expected non-negative"),
    "b_shape": (lambda a: conv2d(a["x"], a["w"], a["b5"]), ValueError, r"^b: expected shape \(4,\)"),
    "relu_str": (lambda a: conv2d(a["x"], a["w"], relu="yes"), TypeError, r"^relu: expected a bool"),
    "w_device": (lambda a: conv2d(a["x"], a["other_device"]), ValueError, r"different devices"),
    "out_shape": (lambda a: conv2d(a["x"], a["w"], out=a["dy_bad"]), ValueError,
                  r"^out: expected shape \(2, 4, 4, 4\)"),
    "out_readonly": (lambda a: conv2d(a["x"], a["w"], padding=1, out=a["readonly"]), ValueError,
                     r"^out: the array is read-only"),
    "out_is_x": (lambda a: conv2d(a["x"], a["w"], padding=1, out=a["x"]), ValueError,
                 r"^out: shares memory with x"),
    "dgrad_dy_shape": (lambda a: conv2d_dgrad(a["dy_bad"], a["w"], (2, 4, 6, 6), padding=1), ValueError,
                       r"^dy: expected shape \(2, 4, 6, 6\)"),
    "dgrad_x_shape": (lambda a: conv2d_dgrad(a["y"], a["w"], (2, 4, 6)), ValueError, r"^x_shape: expected 4"),
    "dgrad_out": (lambda a: conv2d_dgrad(a["y"], a["w"], (2, 4, 6, 6), padding=1, out=a["w"]),
                  ValueError, r"^out: expected shape \(2, 4, 6, 6\)"),
    "wgrad_dy": (lambda a: conv2d_wgrad(a["x"], a["dy_bad"], (4, 4, 3, 3), padding=1), ValueError,
                 r"^dy: expected shape"),
    "wgrad_w_shape": (lambda a: conv2d_wgrad(a["x"], a["y"], (4, 3, 3, 3), padding=1), ValueError,
                      r"^w_shape: expected 4 input channels"),
    "wgrad_bias_out": (lambda a: conv2d_wgrad(a["x"], a["y"], (4, 4, 3, 3), padding=1, out_bias=a["b5"]),
                       ValueError, r"^out_bias: expected shape \(4,\)"),
    "wgrad_no_bias": (lambda a: conv2d_wgrad(a["x"], a["y"], (4, 4, 3, 3), padding=1, with_bias=False,
                                             out_bias=a["b"]), ValueError, r"^out_bias: given"),
    "wgrad_dtype": (lambda a: conv2d_wgrad(a["x64"], a["y"], (4, 4, 3, 3), padding=1), TypeError,
                    r"^dy: expected the dtype of x"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input(case):
    call, error, message = BAD_CALLS[case]
    arrays = _arrays()
    before = {k: np.array(v) for k, v in arrays.items()}
    with pytest.raises(error, match=message):
        call(arrays)
    for name, arr in arrays.items():
        assert np.array_equal(arr, before[name]), name
