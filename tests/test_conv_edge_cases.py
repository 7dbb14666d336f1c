"""Convolution edge cases found by testing as a user would (regressions:
each test failed before its fix): non-finite filters in dgrad, sizes past
the kernels' 32-bit limits, channel mismatches in conv2d_output_shape."""

import numpy as np
import pytest
import torch

import deepconv
from deepconv.nn import Conv2d, Linear
from deepconv.ops import conv2d, conv2d_dgrad, conv2d_output_shape, conv2d_wgrad

# (x shape, w shape, stride, padding, groups), each with taps that land on
# zero padding (or between strides) next to taps that land in the image
NONFINITE_PROBLEMS = {
    "3x3_pad1": ((2, 3, 6, 7), (4, 3, 3, 3), 1, 1, 1),
    "5x5_stride2_pad2": ((2, 2, 9, 8), (3, 2, 5, 5), 2, 2, 1),
    "11x11_stride4_pad2_groups2": ((1, 4, 23, 23), (6, 2, 11, 11), 4, 2, 2),
    "1x1_stride2": ((1, 2, 5, 5), (2, 2, 1, 1), 2, 0, 1),
}


def _torch_dgrad(dy, w, x_shape, stride, padding, groups):
    return torch.nn.grad.conv2d_input(x_shape, torch.from_numpy(w), torch.from_numpy(dy),
                                      stride=stride, padding=padding, groups=groups).numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("problem", list(NONFINITE_PROBLEMS), ids=list(NONFINITE_PROBLEMS))
def test_dgrad_with_a_non_finite_filter_tap_matches_pytorch(problem, special, dtype):
    x_shape, w_shape, stride, padding, groups = NONFINITE_PROBLEMS[problem]
    rng = np.random.default_rng(7)
    w = rng.standard_normal(w_shape).astype(dtype)
    w[0, 0, 0, 0] = special  # the corner tap: it meets the padding of edge pixels
    w[-1, -1, -1, -1] = special
    n, _, h, wd = x_shape
    y_shape = (n, w_shape[0], (h + 2 * padding - w_shape[2]) // stride + 1,
               (wd + 2 * padding - w_shape[3]) // stride + 1)
    dy = rng.standard_normal(y_shape).astype(dtype)
    dx = conv2d_dgrad(dy, w, x_shape, stride=stride, padding=padding, groups=groups)
    expected = _torch_dgrad(dy, w, x_shape, stride, padding, groups)
    assert np.isfinite(expected).any()  # else the case would show nothing
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(dx), np.isinf(expected))
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(dx, expected, rtol=tol, atol=tol)


def test_dgrad_with_finite_filters_keeps_the_kernel_result():
    # the tap-by-tap path serves non-finite filters only: finite ones give
    # the implicit GEMM's bits (checked against a twin call through the kernel)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    dx = conv2d_dgrad(dy, w, (2, 3, 6, 6), padding=1)
    twin = np.array(w)
    twin[0, 0, 0, 0] = np.inf
    by_taps = conv2d_dgrad(dy, twin, (2, 3, 6, 6), padding=1)
    finite = np.isfinite(by_taps)
    np.testing.assert_allclose(dx[finite], by_taps[finite], rtol=2e-5, atol=2e-5)
    expected = _torch_dgrad(dy, w, (2, 3, 6, 6), 1, 1, 1)
    np.testing.assert_allclose(dx, expected, rtol=2e-5, atol=2e-5)


_X = np.zeros((1, 1, 4, 4), np.float32)
_W = np.zeros((1, 1, 1, 1), np.float32)
_DY = np.zeros((1, 1, 1, 1), np.float32)

TOO_LARGE = {
    "stride 2^31": (lambda: conv2d(_X, _W, stride=2**31), "stride"),
    "stride pair 2^31": (lambda: conv2d(_X, _W, stride=(1, 2**31)), "stride"),
    "padding 2^31": (lambda: conv2d(_X, _W, padding=2**31), "padding"),
    "huge padding": (lambda: conv2d(_X, _W, padding=2**29), "padding"),
    "dgrad stride 2^31": (lambda: conv2d_dgrad(_DY, _W, (1, 1, 4, 4), stride=2**31), "stride"),
    "dgrad x_shape 2^31": (lambda: conv2d_dgrad(_DY, _W, (1, 1, 2**31, 1), stride=2**30),
                           "x_shape"),
    "dgrad image 2^31 pixels": (lambda: conv2d_dgrad(_DY, _W, (2**16, 1, 2**8, 2**7),
                                                     stride=2**9), "x_shape"),
    "wgrad kernel 2^31": (lambda: conv2d_wgrad(_X, _DY, (1, 1, 2**31, 1), padding=2**30),
                          "w_shape"),
    "C*R*S 2^31": (lambda: conv2d_output_shape((1, 2**16, 1, 1), (1, 2**16, 2**8, 2**7),
                                               padding=2**8), "w_shape"),
    "output_shape kernel 2^31": (
        lambda: conv2d_output_shape((1, 1, 4, 4), (1, 1, 2**31, 1), padding=2**30), "w_shape"),
    "groups 2^31": (lambda: conv2d_output_shape((1, 2**31, 1, 1), (2**31, 1, 1, 1),
                                                groups=2**31), "groups"),
}


@pytest.mark.parametrize("case", list(TOO_LARGE), ids=list(TOO_LARGE))
def test_sizes_past_the_32_bit_limits_name_the_argument(case):
    call, name = TOO_LARGE[case]
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert message.startswith(name + ":") or message.startswith(name + " "), message
    assert "2^31" in message or "65535" in message, message


def test_output_shape_checks_channels_against_groups():
    with pytest.raises(ValueError, match=r"w_shape: expected 3 input channels per filter"):
        conv2d_output_shape((1, 3, 8, 8), (4, 5, 3, 3))
    assert conv2d_output_shape((1, 4, 8, 8), (6, 2, 3, 3), padding=1, groups=2) == (1, 6, 8, 8)
    with pytest.raises(ValueError, match="groups: 3 does not divide the 4 input channels"):
        conv2d_output_shape((1, 4, 8, 8), (6, 2, 3, 3), groups=3)


@pytest.mark.parametrize("layer", [lambda: Conv2d(3, 4, 3, dtype=None),
                                   lambda: Linear(3, 4, dtype=None)])
def test_layers_refuse_dtype_none(layer):
    with pytest.raises(TypeError, match="dtype: expected float32 or float64, got None"):
        layer()


def test_conv2d_dtype_default_is_float32():
    assert Conv2d(3, 4, 3).dtype == np.float32
    assert deepconv.nn.Conv2d(3, 4, 3, dtype="float64").dtype == np.float64
