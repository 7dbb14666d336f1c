"""deepconv.ops.max_pool2d / max_pool2d_backward against a float64 numpy
reference, on every device."""

import numpy as np
import pytest

import deepconv
from deepconv.ops import max_pool2d, max_pool2d_backward
from deepconv.ops.pool import pool_output_size
from deepconv.testing import assert_gradient_close, assert_race_free, numeric_gradient

from conftest import assert_bitwise_equal, assert_rejected, on

# Named problem list: name -> (input shape, kernel_size, stride, padding, ceil_mode).
PROBLEMS = {
    "alexnet_3s2": ((2, 96, 27, 27), 3, 2, 0, False),  # AlexNet pool2 at batch 2 (-> 13x13)
    "alexnet_conv1_3s2": ((1, 5, 55, 55), 3, 2, 0, False),  # pool1 geometry (-> 27x27)
    "vgg_2s2": ((2, 16, 28, 28), 2, 2, 0, False),
    "vgg_2s2_odd": ((1, 3, 7, 9), 2, 2, 0, False),  # floor drops the last row and column
    "ceil_mode": ((2, 3, 8, 8), 3, 2, 0, True),  # last window half outside (-> 4x4)
    "ceil_last_window_dropped": ((1, 2, 5, 5), 3, 3, 1, True),  # would start in right padding
    "ceil_padding": ((1, 3, 6, 7), 3, 2, 1, True),
    "padding_same": ((1, 2, 6, 7), 3, 1, 1, False),
    "rect": ((2, 5, 9, 11), (2, 3), (1, 2), (1, 0), False),
    "rect_ceil": ((1, 3, 10, 7), (3, 2), (2, 3), (1, 1), True),
    "stride_gt_kernel": ((1, 3, 9, 10), 2, 3, 0, False),  # some inputs in no window
    "global": ((3, 4, 5, 5), 5, 1, 0, False),
    "one_pixel": ((3, 2, 1, 1), 1, 1, 0, False),
    "n1_c1": ((1, 1, 4, 6), 3, 1, 0, False),
    "empty_batch": ((0, 3, 5, 5), 2, 2, 0, False),
    "empty_channels": ((2, 0, 5, 5), 3, 2, 1, True),
}
# Values: "normal" has no ties; "ties" draws from {-inf, -1, 0, -0.0, 2}, so
# most windows hold several maxima and the tie rule decides every gradient.
VALUES = ["normal", "ties"]


def _pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def reference_size(size, k, s, p, ceil_mode):
    """Output length, written out independently of deepconv's helper."""
    if ceil_mode:
        out = int(np.ceil((size + 2 * p - k) / s)) + 1
        return out - 1 if (out - 1) * s >= size + p else out
    return (size + 2 * p - k) // s + 1


def pool_reference(x, kernel, stride, padding, ceil_mode):
    """float64 forward output and each window's arg-max (flat h*W + w): the
    first maximum in row-major window order, the first NaN if any (numpy's
    argmax rule); padding is never chosen (windows are clipped to x)."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    n, c, h, w = x.shape
    out_h = reference_size(h, kh, sh, ph, ceil_mode)
    out_w = reference_size(w, kw, sw, pw, ceil_mode)
    x64 = x.astype(np.float64)
    y = np.empty((n, c, out_h, out_w))
    arg = np.empty((n, c, out_h, out_w), dtype=np.int64)
    for p in range(out_h):
        h0, h1 = max(p * sh - ph, 0), min(p * sh - ph + kh, h)
        for q in range(out_w):
            w0, w1 = max(q * sw - pw, 0), min(q * sw - pw + kw, w)
            window = x64[:, :, h0:h1, w0:w1].reshape(n, c, (h1 - h0) * (w1 - w0))
            j = np.argmax(window, axis=2)
            y[:, :, p, q] = np.take_along_axis(window, j[..., None], axis=2)[..., 0]
            arg[:, :, p, q] = (h0 + j // (w1 - w0)) * w + w0 + j % (w1 - w0)
    return y, arg


def pool_backward_reference(x_shape, arg, dy):
    """float64 dx: each window's dy added at its arg-max, windows in (p, q) order."""
    n, c, h, w = x_shape
    dx = np.zeros((n * c, h * w))
    rows = np.arange(n * c)
    dy64 = dy.astype(np.float64).reshape(n * c, dy.shape[2] * dy.shape[3])
    arg = arg.reshape(dy64.shape)
    for o in range(arg.shape[1]):
        dx[rows, arg[:, o]] += dy64[:, o]
    return dx.reshape(x_shape)


def sample(rng, shape, dtype, values="normal"):
    if values == "ties":
        choices = np.array([-np.inf, -1.0, 0.0, -0.0, 2.0])
        return choices[rng.integers(0, len(choices), size=shape)].astype(dtype)
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def check_pool(device, x_host, dy_host, kernel, stride, padding, ceil_mode):
    """max_pool2d and max_pool2d_backward on ``device`` against the float64
    reference: forward bitwise, backward to rounding (bitwise in float64)."""
    x, dy = on(device, x_host), on(device, dy_host)
    y = max_pool2d(x, kernel, stride, padding, ceil_mode)
    y_ref, arg = pool_reference(x_host, kernel, stride, padding, ceil_mode)
    assert deepconv.device_of(y) == device
    assert_bitwise_equal(y, y_ref.astype(x_host.dtype))
    dx = max_pool2d_backward(x, y, dy, kernel, stride, padding, ceil_mode)
    dx_ref = pool_backward_reference(x_host.shape, arg, dy_host)
    if x_host.dtype == np.float64:
        assert_bitwise_equal(dx, dx_ref)  # same additions in the same order
    else:
        np.testing.assert_allclose(deepconv.to_numpy(dx), dx_ref, rtol=1e-6, atol=1e-6)
    assert_bitwise_equal(x, x_host)  # inputs untouched
    assert_bitwise_equal(dy, dy_host)
    return y, dx


@pytest.mark.parametrize("values", VALUES)
@pytest.mark.parametrize("problem", PROBLEMS)
def test_max_pool_matches_reference(device, dtype, problem, values, rng):
    shape, kernel, stride, padding, ceil_mode = PROBLEMS[problem]
    x_host = sample(rng, shape, dtype, values)
    y_shape = max_pool2d(on("emu:0", x_host), kernel, stride, padding, ceil_mode).shape
    dy_host = sample(rng, y_shape, dtype)
    check_pool(device, x_host, dy_host, kernel, stride, padding, ceil_mode)


@pytest.mark.parametrize("size, k, s, p, ceil_mode, expected", [
    (27, 3, 2, 0, False, 13), (55, 3, 2, 0, False, 27), (224, 2, 2, 0, False, 112),
    (7, 2, 2, 0, False, 3), (7, 2, 2, 0, True, 4), (8, 3, 2, 0, False, 3), (8, 3, 2, 0, True, 4),
    (5, 3, 3, 1, True, 2), (6, 3, 2, 1, True, 4), (6, 2, 2, 1, True, 4), (1, 1, 1, 0, True, 1),
    (13, 3, 2, 1, True, 7), (10, 3, 3, 0, True, 4), (9, 2, 3, 0, False, 3),
])
def test_output_size_rule(size, k, s, p, ceil_mode, expected):
    assert pool_output_size(size, k, s, p, ceil_mode) == expected
    assert reference_size(size, k, s, p, ceil_mode) == expected
    x = deepconv.zeros((1, 1, size, 2 * k), np.float32, device="emu:0")
    assert max_pool2d(x, (k, k), (s, 1), (p, 0), ceil_mode).shape[2] == expected


@pytest.mark.parametrize("stride", [2, 1])
def test_ties_route_to_first_maximum(device, dtype, stride):
    # Every window of a constant input is one big tie: the gradient of each
    # window goes to its first element in row-major order that is inside x
    # (never padding), and nowhere else. With stride 1 and padding, the first
    # two windows of a row share their first element, which sums both.
    x = on(device, np.zeros((1, 2, 7, 7), dtype))
    y = max_pool2d(x, 3, stride, 1)
    dy_host = np.arange(1, y.size + 1, dtype=dtype).reshape(y.shape)
    dx = deepconv.to_numpy(max_pool2d_backward(x, y, on(device, dy_host), 3, stride, 1))
    expected = np.zeros((1, 2, 7, 7), dtype)
    firsts = [max(stride * p - 1, 0) for p in range(y.shape[2])]
    for p, h in enumerate(firsts):
        for q, w in enumerate(firsts):
            expected[:, :, h, w] += dy_host[:, :, p, q]
    assert_bitwise_equal(dx, expected)
    assert np.count_nonzero(dx) == 2 * len(set(firsts)) ** 2


def test_ties_in_overlapping_windows(device, dtype):
    # A row [1, 5, 5, 5, 1]: windows of 3, stride 1. Window 0 = (1, 5, 5) picks
    # index 1, window 1 = (5, 5, 5) picks index 1, window 2 = (5, 5, 1) index 2.
    x = on(device, np.array([1, 5, 5, 5, 1], dtype).reshape(1, 1, 1, 5))
    y = max_pool2d(x, (1, 3), 1)
    dy = on(device, np.array([1, 10, 100], dtype).reshape(1, 1, 1, 3))
    dx = max_pool2d_backward(x, y, dy, (1, 3), 1)
    assert_bitwise_equal(dx, np.array([0, 11, 100, 0, 0], dtype).reshape(1, 1, 1, 5))


def test_minus_infinity_and_signed_zero(device, dtype):
    # An all -inf window outputs -inf and still routes its gradient to its
    # first element; -0.0 and +0.0 tie, the first one wins and is output.
    x_host = np.array([[-np.inf, -np.inf], [-np.inf, -np.inf], [-0.0, 0.0], [0.0, -0.0]], dtype)
    x = on(device, x_host.reshape(1, 1, 4, 2))
    y = max_pool2d(x, 2, 2, ceil_mode=True)
    assert_bitwise_equal(y, np.array([-np.inf, -0.0], dtype).reshape(1, 1, 2, 1))
    dx = max_pool2d_backward(x, y, on(device, np.array([3, 4], dtype).reshape(1, 1, 2, 1)), 2, 2,
                             ceil_mode=True)
    assert_bitwise_equal(dx, np.array([[3, 0], [0, 0], [4, 0], [0, 0]], dtype).reshape(1, 1, 4, 2))


def test_nan_wins_its_windows(device, dtype, rng):
    x_host = sample(rng, (2, 3, 9, 9), dtype)
    x_host[0, 1, 4, 4] = np.nan
    x_host[1, 2, 0, 0] = np.nan
    x_host[1, 2, 0, 1] = np.nan  # two NaNs in one window: the first is the arg-max
    x = on(device, x_host)
    y = max_pool2d(x, 3, 2)
    y_host = deepconv.to_numpy(y)
    nan = np.isnan(y_host)
    assert nan[0, 1, 1:3, 1:3].all() and nan[1, 2, 0, 0]
    assert nan.sum() == 5  # (4, 4) lies in 4 windows, (0, 0)/(0, 1) in one
    y_ref, arg = pool_reference(x_host, 3, 2, 0, False)
    assert_bitwise_equal(y, y_ref.astype(dtype))
    dy_host = sample(rng, y.shape, dtype)
    dx = deepconv.to_numpy(max_pool2d_backward(x, y, on(device, dy_host), 3, 2))
    np.testing.assert_allclose(dx, pool_backward_reference(x_host.shape, arg, dy_host), rtol=1e-6)
    assert dx[1, 2, 0, 0] == dy_host[1, 2, 0, 0] and dx[1, 2, 0, 1] == 0
    np.testing.assert_allclose(dx[0, 1, 4, 4], dy_host[0, 1, 1:3, 1:3].sum(), rtol=1e-6)


def test_into_out(device, dtype, rng):
    x_host = sample(rng, (2, 3, 7, 7), dtype)
    x = on(device, x_host)
    out = deepconv.zeros((2, 3, 3, 3), dtype, device=device)
    assert max_pool2d(x, 3, 2, out=out) is out
    y_ref, arg = pool_reference(x_host, 3, 2, 0, False)
    assert_bitwise_equal(out, y_ref.astype(dtype))
    dx = on(device, np.full((2, 3, 7, 7), 7.0, dtype))  # every element is overwritten
    dy_host = sample(rng, (2, 3, 3, 3), dtype)
    assert max_pool2d_backward(x, out, on(device, dy_host), 3, 2, out=dx) is dx
    np.testing.assert_allclose(deepconv.to_numpy(dx),
                               pool_backward_reference(x_host.shape, arg, dy_host), rtol=1e-6)


def test_bitwise_repeatable(device, dtype, rng):
    x = on(device, sample(rng, (2, 8, 27, 27), dtype, "ties"))
    dy = on(device, sample(rng, (2, 8, 14, 14), dtype))
    first = max_pool2d(x, 3, 2, 1, ceil_mode=True)
    second = max_pool2d(x, 3, 2, 1, ceil_mode=True)
    assert_bitwise_equal(first, deepconv.to_numpy(second))
    dx1 = max_pool2d_backward(x, first, dy, 3, 2, 1, True)
    dx2 = max_pool2d_backward(x, second, dy, 3, 2, 1, True)
    assert_bitwise_equal(dx1, deepconv.to_numpy(dx2))


# Problems whose windows never overlap (stride >= window, or one window per
# dimension): the backward scatters one window per thread
# (max_pool2d_bprop_scatter_kernel) instead of gathering per input element.
DISJOINT = ["vgg_2s2", "vgg_2s2_odd", "stride_gt_kernel", "ceil_last_window_dropped", "global",
            "one_pixel"]


@pytest.mark.parametrize("problem", DISJOINT)
def test_disjoint_windows_keep_the_gather_bits(device, dtype, problem, rng):
    # The gather's dx element is 0 + (the one window's dy): +0.0 for a -0.0
    # gradient, and NaN / inf pass through. The scatter must write the same
    # bits, and 0 wherever no window reaches (floor mode, stride > window).
    shape, kernel, stride, padding, ceil_mode = PROBLEMS[problem]
    x_host = sample(rng, shape, dtype, "ties")
    x = on(device, x_host)
    y = max_pool2d(x, kernel, stride, padding, ceil_mode)
    specials = np.array([-0.0, 0.0, np.nan, np.inf, -np.inf, 1.5], dtype)
    dy_host = specials[rng.integers(0, len(specials), size=y.shape)]
    _, arg = pool_reference(x_host, kernel, stride, padding, ceil_mode)
    expected = np.zeros(x_host.shape, dtype).reshape(shape[0] * shape[1], -1)
    rows = np.arange(expected.shape[0])
    flat_dy = dy_host.reshape(expected.shape[0], -1)
    for o, target in enumerate(arg.reshape(expected.shape[0], -1).T):
        expected[rows, target] = np.zeros((), dtype) + flat_dy[:, o]
    dx = max_pool2d_backward(x, y, on(device, dy_host), kernel, stride, padding, ceil_mode)
    assert_bitwise_equal(dx, expected.reshape(shape))


@pytest.mark.parametrize("problem", ["alexnet_conv1_3s2", "ceil_padding", "rect"])
def test_race_free(dtype, problem, rng):
    shape, kernel, stride, padding, ceil_mode = PROBLEMS[problem]
    x = deepconv.asarray(sample(rng, shape, dtype, "ties"), device="emu:1")
    y = max_pool2d(x, kernel, stride, padding, ceil_mode)
    dy = deepconv.asarray(sample(rng, y.shape, dtype), device="emu:1")
    assert_race_free(max_pool2d, x, kernel, stride, padding, ceil_mode)
    assert_race_free(max_pool2d_backward, x, y, dy, kernel, stride, padding, ceil_mode)


@pytest.mark.parametrize("kernel, stride, padding, ceil_mode", [
    (3, 2, 1, True), (2, 2, 0, False), ((3, 2), (1, 2), (1, 0), False),
])
def test_numeric_gradient_float64(kernel, stride, padding, ceil_mode, rng):
    # f(x) = sum(max_pool2d(x) * r); df/dx by central differences against
    # max_pool2d_backward(x, y, r). Where a window's two largest values are
    # within 1e-4 (a kink: the arg-max would flip under the nudge), all of
    # that window's elements are masked.
    x = rng.standard_normal((2, 2, 6, 7))
    x[0, 0, 0, :2] = [3.0, 3.0 + 1e-9]  # a planted near-tie between window maxima
    device = "emu:1"
    y = max_pool2d(deepconv.asarray(x, device=device), kernel, stride, padding, ceil_mode)
    r = rng.standard_normal(y.shape)

    def loss():
        pooled = max_pool2d(deepconv.asarray(x, device=device), kernel, stride, padding, ceil_mode)
        return np.sum(deepconv.to_numpy(pooled) * r)

    numeric = numeric_gradient(loss, x)
    analytic = max_pool2d_backward(deepconv.asarray(x, device=device), y,
                                   deepconv.asarray(r, device=device), kernel, stride, padding,
                                   ceil_mode)
    ignore = _near_tie_mask(x, kernel, stride, padding, ceil_mode, gap=1e-4)
    assert ignore[0, 0, 0, 0] and ignore.mean() < 0.2
    assert_gradient_close(analytic, numeric, rtol=1e-7, atol=1e-9, ignore=ignore)


def _near_tie_mask(x, kernel, stride, padding, ceil_mode, gap):
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    n, c, h, w = x.shape
    mask = np.zeros(x.shape, bool)
    for p in range(reference_size(h, kh, sh, ph, ceil_mode)):
        h0, h1 = max(p * sh - ph, 0), min(p * sh - ph + kh, h)
        for q in range(reference_size(w, kw, sw, pw, ceil_mode)):
            w0, w1 = max(q * sw - pw, 0), min(q * sw - pw + kw, w)
            window = np.sort(x[:, :, h0:h1, w0:w1].reshape(n, c, -1), axis=2)
            if window.shape[2] > 1:
                close = window[..., -1] - window[..., -2] < gap
                mask[:, :, h0:h1, w0:w1] |= close[:, :, None, None]
    return mask


@pytest.mark.slow
def test_alexnet_full_size_pool1(rng):
    # AlexNet pool1 on a batch of 8: (8, 96, 55, 55) -> (8, 96, 27, 27).
    check_pool(deepconv.device("emu:0"), sample(rng, (8, 96, 55, 55), np.float32, "ties"),
               sample(rng, (8, 96, 27, 27), np.float32), 3, 2, 0, False)


# --- PyTorch parity (skipped without torch; never a dependency) ------------------


@pytest.mark.parametrize("shape, kernel, stride, padding, ceil_mode", [
    ((2, 6, 27, 27), 3, 2, 0, False),  # AlexNet, overlapping
    ((2, 6, 13, 13), 3, 2, 1, True),
    ((1, 4, 8, 10), 3, 2, 0, True),
    ((1, 3, 5, 5), 3, 3, 1, True),  # PyTorch's last-window correction applies
    ((2, 3, 9, 11), (2, 3), (1, 2), (1, 1), True),
    ((2, 4, 14, 14), 2, 2, 0, False),  # VGG
])
def test_matches_pytorch(shape, kernel, stride, padding, ceil_mode, rng):
    torch = pytest.importorskip("torch", reason="PyTorch parity tests need torch")
    x_host = rng.standard_normal(shape)  # no ties: PyTorch's arg-max is then unambiguous
    xt = torch.tensor(x_host, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, kernel, stride, padding, ceil_mode=ceil_mode)
    dy_host = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy_host))
    for dtype in (np.float64, np.float32):
        x = deepconv.asarray(x_host.astype(dtype), device="emu:0")
        y = max_pool2d(x, kernel, stride, padding, ceil_mode)
        assert y.shape == tuple(yt.shape)
        np.testing.assert_array_equal(y, yt.detach().numpy().astype(dtype))
        dx = max_pool2d_backward(x, y, deepconv.asarray(dy_host.astype(dtype), device="emu:0"),
                                 kernel, stride, padding, ceil_mode)
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol)


def test_ties_match_pytorch(rng):
    # PyTorch's CPU kernel also routes a tie to the first maximum in row-major
    # window order (it differs only for NaN: it takes the last NaN).
    torch = pytest.importorskip("torch", reason="PyTorch parity tests need torch")
    x_host = rng.integers(0, 3, size=(2, 3, 11, 11)).astype(np.float64)
    xt = torch.tensor(x_host, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 3, 2, 1, ceil_mode=True)
    dy_host = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy_host))
    x = deepconv.asarray(x_host, device="emu:0")
    y = max_pool2d(x, 3, 2, 1, ceil_mode=True)
    dx = max_pool2d_backward(x, y, deepconv.asarray(dy_host, device="emu:0"), 3, 2, 1, True)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


# --- bad input -------------------------------------------------------------------


def _arrays():
    x = deepconv.asarray(np.linspace(-1, 1, 2 * 3 * 6 * 6, dtype=np.float32).reshape(2, 3, 6, 6),
                         device="emu:1")
    y = max_pool2d(x, 2)
    readonly = deepconv.zeros((2, 3, 3, 3), np.float32, device="emu:1")
    readonly.flags.writeable = False
    return {
        "x": x,
        "y": y,
        "dy": deepconv.zeros((2, 3, 3, 3), np.float32, device="emu:1"),
        "x3d": deepconv.zeros((3, 6, 6), np.float32, device="emu:1"),
        "x_empty_h": deepconv.zeros((1, 1, 0, 4), np.float32, device="emu:1"),
        "ints": deepconv.zeros((2, 3, 6, 6), np.int32, device="emu:1"),
        "strided": deepconv.zeros((2, 3, 6, 12), np.float32, device="emu:1")[..., ::2],
        "y64": deepconv.zeros((2, 3, 3, 3), np.float64, device="emu:1"),
        "y_wrong": deepconv.zeros((2, 3, 4, 3), np.float32, device="emu:1"),
        "readonly": readonly,
        "other_device": deepconv.zeros((2, 3, 3, 3), np.float32, device="emu:2"),
        "x_like": deepconv.zeros((2, 3, 6, 6), np.float32, device="emu:1"),
    }


BAD_CALLS = {
    "x_list": (lambda a: max_pool2d([[1.0]], 2), TypeError, r"^x: expected a numpy.ndarray"),
    "x_int": (lambda a: max_pool2d(a["ints"], 2), TypeError, r"^x: expected dtype float32 or float64"),
    "x_strided": (lambda a: max_pool2d(a["strided"], 2), ValueError, r"^x: expected a C-contiguous"),
    "x_3d": (lambda a: max_pool2d(a["x3d"], 2), ValueError,
             r"^x: expected a 4-D \(N, C, H, W\) array, got shape \(3, 6, 6\)"),
    "x_empty_h": (lambda a: max_pool2d(a["x_empty_h"], 1), ValueError, r"^x: expected H and W >= 1"),
    "kernel_zero": (lambda a: max_pool2d(a["x"], 0), ValueError, r"^kernel_size: expected values >= 1"),
    "kernel_negative": (lambda a: max_pool2d(a["x"], (2, -1)), ValueError, r"^kernel_size: expected values >= 1"),
    "kernel_float": (lambda a: max_pool2d(a["x"], 2.0), TypeError, r"^kernel_size: expected an int or a pair"),
    "kernel_bool": (lambda a: max_pool2d(a["x"], True), TypeError, r"^kernel_size: expected an int or a pair"),
    "kernel_triple": (lambda a: max_pool2d(a["x"], (2, 2, 2)), TypeError, r"^kernel_size: expected an int or a pair"),
    "kernel_too_big": (lambda a: max_pool2d(a["x"], 7), ValueError,
                       r"^kernel_size: the window \(7, 7\) is larger than the padded input"),
    "kernel_too_wide": (lambda a: max_pool2d(a["x"], (2, 9), padding=(0, 1)), ValueError,
                        r"^kernel_size: .*\(width 6 \+ 2 \* 1\)"),
    "stride_zero": (lambda a: max_pool2d(a["x"], 2, 0), ValueError, r"^stride: expected values >= 1"),
    "stride_str": (lambda a: max_pool2d(a["x"], 2, "2"), TypeError, r"^stride: expected an int or a pair"),
    "padding_negative": (lambda a: max_pool2d(a["x"], 2, 2, -1), ValueError, r"^padding: expected values >= 0"),
    "padding_over_half": (lambda a: max_pool2d(a["x"], 3, 2, 2), ValueError,
                          r"^padding: expected at most half the kernel size"),
    "padding_over_half_w": (lambda a: max_pool2d(a["x"], (3, 2), 1, (1, 2)), ValueError,
                            r"^padding: expected at most half.*\(width\)"),
    "ceil_mode_int": (lambda a: max_pool2d(a["x"], 2, ceil_mode=1), TypeError, r"^ceil_mode: expected a bool"),
    "out_shape": (lambda a: max_pool2d(a["x"], 2, out=a["y_wrong"]), ValueError,
                  r"^out: expected the shape of the output \(2, 3, 3, 3\), got \(2, 3, 4, 3\)"),
    "out_dtype": (lambda a: max_pool2d(a["x"], 2, out=a["y64"]), TypeError, r"^out: expected the dtype of x"),
    "out_readonly": (lambda a: max_pool2d(a["x"], 2, out=a["readonly"]), ValueError, r"^out: the array is read-only"),
    "out_device": (lambda a: max_pool2d(a["x"], 2, out=a["other_device"]), ValueError,
                   r"x is on emu:1, out is on emu:2"),
    "out_overlaps_x": (lambda a: max_pool2d(a["x"], 2, out=a["x"].reshape(-1)[:54].reshape(2, 3, 3, 3)),
                       ValueError, r"^out: shares memory with x"),
    "bwd_y_shape": (lambda a: max_pool2d_backward(a["x"], a["y_wrong"], a["dy"], 2), ValueError,
                    r"^y: expected the shape of max_pool2d\(x\) \(2, 3, 3, 3\), got \(2, 3, 4, 3\)"),
    "bwd_y_dtype": (lambda a: max_pool2d_backward(a["x"], a["y64"], a["dy"], 2), TypeError,
                    r"^y: expected the dtype of x \(float32\), got float64"),
    "bwd_dy_shape": (lambda a: max_pool2d_backward(a["x"], a["y"], a["y_wrong"], 2), ValueError,
                     r"^dy: expected the shape of y"),
    "bwd_dy_list": (lambda a: max_pool2d_backward(a["x"], a["y"], [0.0], 2), TypeError,
                    r"^dy: expected a numpy.ndarray"),
    "bwd_dy_device": (lambda a: max_pool2d_backward(a["x"], a["y"], a["other_device"], 2), ValueError,
                      r"dy is on emu:2"),
    "bwd_kernel": (lambda a: max_pool2d_backward(a["x"], a["y"], a["dy"], 0), ValueError,
                   r"^kernel_size: expected values >= 1"),
    "bwd_out_shape": (lambda a: max_pool2d_backward(a["x"], a["y"], a["dy"], 2, out=a["dy"]), ValueError,
                      r"^out: expected the shape of x"),
    "bwd_out_is_x": (lambda a: max_pool2d_backward(a["x"], a["y"], a["dy"], 2, out=a["x"]), ValueError,
                     r"^out: shares memory with x"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input(case):
    call, error, message = BAD_CALLS[case]
    assert_rejected(call, error, message, _arrays())
