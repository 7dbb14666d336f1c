"""deepconv.ops.lrn / lrn_backward against a float64 numpy reference, on
every device."""

import numpy as np
import pytest

import deepconv
from deepconv.ops import lrn, lrn_backward
from deepconv.testing import assert_gradient_close, assert_race_free, numeric_gradient

from conftest import assert_bitwise_equal, assert_rejected, on

# Named problem list: name -> (shape, size, alpha, beta, k, alpha_convention).
PROBLEMS = {
    "alexnet": ((2, 96, 13, 13), 5, 1e-4, 0.75, 2.0, "paper"),  # conv5 maps, AlexNet constants
    "alexnet_per_size": ((1, 96, 7, 7), 5, 1e-4, 0.75, 1.0, "per_size"),  # Caffe's zoo AlexNet
    "strong": ((1, 20, 6, 5), 5, 0.5, 0.75, 2.0, "paper"),  # alpha large: the cross term matters
    "odd": ((3, 10, 5, 7), 3, 0.3, 0.75, 1.0, "per_size"),
    "n1": ((1, 7, 3, 5), 5, 1.0, 0.75, 2.0, "paper"),
    "c_not_multiple": ((1, 13, 4, 3), 5, 0.2, 0.75, 2.0, "per_size"),
    "size_gt_c": ((2, 3, 4, 4), 7, 0.5, 0.75, 1.0, "paper"),
    "size_much_gt_c": ((1, 2, 3, 3), 101, 0.5, 0.6, 1.5, "per_size"),
    "c1": ((2, 1, 3, 3), 5, 1.0, 0.75, 2.0, "paper"),
    "size1": ((2, 4, 3, 5), 1, 0.8, 0.5, 1.0, "paper"),  # no cross-channel term beyond itself
    "beta1": ((1, 6, 2, 2), 3, 1.0, 1.0, 1.0, "paper"),
    "alpha0": ((1, 5, 2, 3), 3, 0.0, 0.75, 2.0, "paper"),  # y = x / k^beta
    "empty": ((0, 4, 3, 3), 5, 1e-4, 0.75, 2.0, "paper"),
    "empty_hw": ((2, 4, 0, 3), 5, 1e-4, 0.75, 2.0, "paper"),
}


def alpha_eff(alpha, size, convention):
    return alpha / size if convention == "per_size" else alpha


def lrn_reference(x, size, alpha, beta, k):
    """float64 (y, s) with alpha already the coefficient of the sum."""
    x64 = x.astype(np.float64)
    channels, half = x.shape[1], size // 2
    squares = x64**2
    s = np.empty_like(x64)
    for c in range(channels):
        lo, hi = max(0, c - half), min(channels - 1, c + half)
        s[:, c] = k + alpha * squares[:, lo:hi + 1].sum(axis=1)
    return x64 * s**-beta, s


def lrn_backward_reference(x, dy, size, alpha, beta, k):
    """float64 dx, the formula of the kernel note written out in numpy."""
    y, s = lrn_reference(x, size, alpha, beta, k)
    dy64 = dy.astype(np.float64)
    t = dy64 * y / s
    dx = dy64 * s**-beta
    channels, half = x.shape[1], size // 2
    for c in range(channels):
        lo, hi = max(0, c - half), min(channels - 1, c + half)
        dx[:, c] -= 2 * alpha * beta * x[:, c] * t[:, lo:hi + 1].sum(axis=1)
    return dx


def normal(rng, shape, dtype, scale=1.0):
    return np.asarray(scale * rng.standard_normal(shape), dtype=dtype)


def tolerances(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_lrn_matches_reference(device, dtype, problem, rng):
    shape, size, alpha, beta, k, convention = PROBLEMS[problem]
    x_host = normal(rng, shape, dtype, scale=2.0)
    dy_host = normal(rng, shape, dtype)
    x, dy = on(device, x_host), on(device, dy_host)
    hyper = dict(size=size, alpha=alpha, beta=beta, k=k, alpha_convention=convention)
    y = lrn(x, **hyper)
    assert deepconv.device_of(y) == device
    a = alpha_eff(alpha, size, convention)
    y_ref, _ = lrn_reference(x_host, size, a, beta, k)
    np.testing.assert_allclose(deepconv.to_numpy(y), y_ref, **tolerances(dtype))
    dx = lrn_backward(x, y, dy, **hyper)
    dx_ref = lrn_backward_reference(x_host, dy_host, size, a, beta, k)
    np.testing.assert_allclose(deepconv.to_numpy(dx), dx_ref, **tolerances(dtype))
    assert_bitwise_equal(x, x_host)  # inputs untouched
    assert_bitwise_equal(dy, dy_host)


def test_alexnet_defaults(rng):
    # size 5, alpha 1e-4 as written in the paper, beta 0.75, k 2.
    x_host = rng.standard_normal((1, 9, 3, 3)) * 30
    y = lrn(deepconv.asarray(x_host, device="emu:0"))
    np.testing.assert_allclose(y, lrn_reference(x_host, 5, 1e-4, 0.75, 2.0)[0], rtol=1e-13)


def test_alpha_conventions(device, dtype, rng):
    # per_size divides alpha by size: 0.625 / 5 == 0.125 exactly, so the two
    # calls hand the kernel the same coefficient and agree to the bit.
    x = on(device, normal(rng, (2, 7, 3, 3), dtype))
    per_size = lrn(x, size=5, alpha=0.625, alpha_convention="per_size")
    paper = lrn(x, size=5, alpha=0.125, alpha_convention="paper")
    assert_bitwise_equal(per_size, deepconv.to_numpy(paper))
    assert not np.array_equal(deepconv.to_numpy(lrn(x, size=5, alpha=0.625)), paper)


def test_nan_stays_in_its_window(device, dtype, rng):
    x_host = normal(rng, (2, 9, 3, 4), dtype)
    x_host[1, 4, 2, 1] = np.nan
    x = on(device, x_host)
    y = deepconv.to_numpy(lrn(x, size=5, alpha=0.1))
    nan = np.isnan(y)
    assert nan[1, 2:7, 2, 1].all()  # channels whose window holds channel 4
    assert nan.sum() == 5
    dy = on(device, normal(rng, x_host.shape, dtype))
    dx = deepconv.to_numpy(lrn_backward(x, on(device, y), dy, size=5, alpha=0.1))
    nan = np.isnan(dx)
    assert nan[1, :, 2, 1].all() and nan.sum() == 9  # only that pixel's channels 0..8


def test_into_out(device, dtype, rng):
    x_host = normal(rng, (2, 6, 3, 3), dtype)
    x = on(device, x_host)
    out = on(device, np.full(x_host.shape, 7.0, dtype))
    assert lrn(x, size=3, alpha=0.2, out=out) is out
    y_ref, _ = lrn_reference(x_host, 3, 0.2, 0.75, 2.0)
    np.testing.assert_allclose(deepconv.to_numpy(out), y_ref, **tolerances(dtype))
    dy_host = normal(rng, x_host.shape, dtype)
    dx = on(device, np.full(x_host.shape, 7.0, dtype))
    assert lrn_backward(x, out, on(device, dy_host), size=3, alpha=0.2, out=dx) is dx
    np.testing.assert_allclose(deepconv.to_numpy(dx),
                               lrn_backward_reference(x_host, dy_host, 3, 0.2, 0.75, 2.0),
                               **tolerances(dtype))


def test_bitwise_repeatable(device, dtype, rng):
    x = on(device, normal(rng, (2, 32, 9, 9), dtype, scale=3.0))
    dy = on(device, normal(rng, (2, 32, 9, 9), dtype))
    first, second = lrn(x, alpha=0.01), lrn(x, alpha=0.01)
    assert_bitwise_equal(first, deepconv.to_numpy(second))
    dx1 = lrn_backward(x, first, dy, alpha=0.01)
    assert_bitwise_equal(dx1, deepconv.to_numpy(lrn_backward(x, second, dy, alpha=0.01)))


@pytest.mark.parametrize("problem", ["strong", "size_gt_c", "c_not_multiple"])
def test_race_free(dtype, problem, rng):
    shape, size, alpha, beta, k, convention = PROBLEMS[problem]
    hyper = dict(size=size, alpha=alpha, beta=beta, k=k, alpha_convention=convention)
    x = deepconv.asarray(normal(rng, shape, dtype), device="emu:1")
    dy = deepconv.asarray(normal(rng, shape, dtype), device="emu:1")
    assert_race_free(lambda a: lrn(a, **hyper), x)
    assert_race_free(lambda a, b, g: lrn_backward(a, b, g, **hyper), x, lrn(x, **hyper), dy)


@pytest.mark.parametrize("size, alpha, beta, k, convention", [
    (5, 0.5, 0.75, 2.0, "paper"),
    (3, 1.0, 0.6, 1.0, "per_size"),
    (7, 0.3, 1.3, 0.5, "paper"),  # size > C
    (5, 1e-4, 0.75, 2.0, "paper"),  # AlexNet
])
def test_numeric_gradient_float64(size, alpha, beta, k, convention, rng):
    # f(x) = sum(lrn(x) * r); df/dx by central differences against
    # lrn_backward(x, lrn(x), r). Smooth everywhere (s >= k > 0): no mask.
    x = rng.standard_normal((2, 6, 2, 3)) * 1.5
    r = rng.standard_normal(x.shape)
    hyper = dict(size=size, alpha=alpha, beta=beta, k=k, alpha_convention=convention)

    def loss():
        return np.sum(deepconv.to_numpy(lrn(deepconv.asarray(x, device="emu:1"), **hyper)) * r)

    numeric = numeric_gradient(loss, x)
    xd = deepconv.asarray(x, device="emu:1")
    analytic = lrn_backward(xd, lrn(xd, **hyper), deepconv.asarray(r, device="emu:1"), **hyper)
    assert_gradient_close(analytic, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.slow
def test_alexnet_full_size(rng):
    # AlexNet's first LRN on a batch of 4: (4, 96, 55, 55).
    x_host = normal(rng, (4, 96, 55, 55), np.float32, scale=10.0)
    dy_host = normal(rng, x_host.shape, np.float32)
    x = deepconv.asarray(x_host, device="emu:0")
    y = lrn(x)
    np.testing.assert_allclose(y, lrn_reference(x_host, 5, 1e-4, 0.75, 2.0)[0], rtol=1e-5, atol=1e-6)
    dx = lrn_backward(x, y, deepconv.asarray(dy_host, device="emu:0"))
    np.testing.assert_allclose(dx, lrn_backward_reference(x_host, dy_host, 5, 1e-4, 0.75, 2.0),
                               rtol=1e-5, atol=1e-6)


# --- PyTorch parity (skipped without torch; never a dependency) ------------------


@pytest.mark.parametrize("shape, size, alpha, beta, k", [
    ((2, 96, 5, 5), 5, 1e-4, 0.75, 2.0),
    ((1, 7, 4, 3), 3, 0.7, 0.75, 1.0),
    ((2, 3, 3, 3), 7, 0.9, 0.5, 1.5),  # size > C
    ((1, 5, 2, 2), 1, 0.4, 1.2, 2.0),
])
def test_matches_pytorch_per_size(shape, size, alpha, beta, k, rng):
    # PyTorch's local_response_norm averages x^2 over the window (padding
    # included), i.e. alpha / size: our "per_size" convention, not "paper".
    torch = pytest.importorskip("torch", reason="PyTorch parity tests need torch")
    x_host = rng.standard_normal(shape) * 2
    dy_host = rng.standard_normal(shape)
    xt = torch.tensor(x_host, requires_grad=True)
    yt = torch.nn.functional.local_response_norm(xt, size, alpha=alpha, beta=beta, k=k)
    yt.backward(torch.tensor(dy_host))
    hyper = dict(size=size, alpha=alpha, beta=beta, k=k)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        x = deepconv.asarray(x_host.astype(dtype), device="emu:0")
        y = lrn(x, alpha_convention="per_size", **hyper)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=tol, atol=tol)
        dx = lrn_backward(x, y, deepconv.asarray(dy_host.astype(dtype), device="emu:0"),
                          alpha_convention="per_size", **hyper)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol)
    if size > 1 and alpha > 0:
        paper = lrn(deepconv.asarray(x_host, device="emu:0"), alpha_convention="paper", **hyper)
        assert not np.allclose(paper, yt.detach().numpy(), rtol=1e-9, atol=0)


# --- bad input -------------------------------------------------------------------


def _arrays():
    x = deepconv.asarray(np.linspace(-1, 1, 2 * 5 * 3 * 3, dtype=np.float32).reshape(2, 5, 3, 3),
                         device="emu:1")
    readonly = deepconv.zeros((2, 5, 3, 3), np.float32, device="emu:1")
    readonly.flags.writeable = False
    return {
        "x": x,
        "y": lrn(x),
        "dy": deepconv.zeros((2, 5, 3, 3), np.float32, device="emu:1"),
        "x3d": deepconv.zeros((5, 3, 3), np.float32, device="emu:1"),
        "ints": deepconv.zeros((2, 5, 3, 3), np.int64, device="emu:1"),
        "strided": deepconv.zeros((2, 5, 3, 6), np.float32, device="emu:1")[..., ::2],
        "x64": deepconv.zeros((2, 5, 3, 3), np.float64, device="emu:1"),
        "wrong_shape": deepconv.zeros((2, 5, 3, 4), np.float32, device="emu:1"),
        "readonly": readonly,
        "other_device": deepconv.zeros((2, 5, 3, 3), np.float32, device="emu:2"),
    }


BAD_CALLS = {
    "x_tuple": (lambda a: lrn((1.0,)), TypeError, r"^x: expected a numpy.ndarray"),
    "x_int": (lambda a: lrn(a["ints"]), TypeError, r"^x: expected dtype float32 or float64, got int64"),
    "x_strided": (lambda a: lrn(a["strided"]), ValueError, r"^x: expected a C-contiguous"),
    "x_3d": (lambda a: lrn(a["x3d"]), ValueError, r"^x: expected a 4-D \(N, C, H, W\) array"),
    "size_even": (lambda a: lrn(a["x"], size=4), ValueError, r"^size: expected an odd integer >= 1, got 4"),
    "size_zero": (lambda a: lrn(a["x"], size=0), ValueError, r"^size: expected an odd integer >= 1, got 0"),
    "size_negative": (lambda a: lrn(a["x"], size=-3), ValueError, r"^size: expected an odd integer"),
    "size_float": (lambda a: lrn(a["x"], size=5.0), TypeError, r"^size: expected an int, got float"),
    "size_bool": (lambda a: lrn(a["x"], size=True), TypeError, r"^size: expected an int, got bool"),
    "alpha_negative": (lambda a: lrn(a["x"], alpha=-1e-4), ValueError, r"^alpha: expected a finite value >= 0"),
    "alpha_nan": (lambda a: lrn(a["x"], alpha=float("nan")), ValueError, r"^alpha: expected a finite value"),
    "alpha_str": (lambda a: lrn(a["x"], alpha="1e-4"), TypeError, r"^alpha: expected a float, got str"),
    "beta_inf": (lambda a: lrn(a["x"], beta=float("inf")), ValueError, r"^beta: expected a finite value"),
    "k_zero": (lambda a: lrn(a["x"], k=0.0), ValueError, r"^k: expected a finite value > 0, got 0.0"),
    "k_none": (lambda a: lrn(a["x"], k=None), TypeError, r"^k: expected a float, got NoneType"),
    "convention": (lambda a: lrn(a["x"], alpha_convention="caffe"), ValueError,
                   r"^alpha_convention: expected 'paper' .* or 'per_size' .*got 'caffe'"),
    "out_shape": (lambda a: lrn(a["x"], out=a["wrong_shape"]), ValueError, r"^out: expected the shape of x"),
    "out_dtype": (lambda a: lrn(a["x"], out=a["x64"]), TypeError, r"^out: expected the dtype of x"),
    "out_readonly": (lambda a: lrn(a["x"], out=a["readonly"]), ValueError, r"^out: the array is read-only"),
    "out_in_place": (lambda a: lrn(a["x"], out=a["x"]), ValueError, r"^out: shares memory with x"),
    "out_device": (lambda a: lrn(a["x"], out=a["other_device"]), ValueError, r"out is on emu:2"),
    "bwd_y_shape": (lambda a: lrn_backward(a["x"], a["wrong_shape"], a["dy"]), ValueError,
                    r"^y: expected the shape of x \(2, 5, 3, 3\), got \(2, 5, 3, 4\)"),
    "bwd_dy_dtype": (lambda a: lrn_backward(a["x"], a["y"], a["x64"]), TypeError,
                     r"^dy: expected the dtype of x \(float32\), got float64"),
    "bwd_dy_device": (lambda a: lrn_backward(a["x"], a["y"], a["other_device"]), ValueError, r"dy is on emu:2"),
    "bwd_size": (lambda a: lrn_backward(a["x"], a["y"], a["dy"], size=2), ValueError, r"^size: expected an odd"),
    "bwd_out_is_dy": (lambda a: lrn_backward(a["x"], a["y"], a["dy"], out=a["dy"]), ValueError,
                      r"^out: shares memory with dy"),
    "bwd_out_is_y": (lambda a: lrn_backward(a["x"], a["y"], a["dy"], out=a["y"]), ValueError,
                     r"^out: shares memory with y"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input(case):
    call, error, message = BAD_CALLS[case]
    assert_rejected(call, error, message, _arrays())
