"""deepconv.ops.relu / relu_backward against numpy, on every device."""

import numpy as np
import pytest

import deepconv
from deepconv.ops import relu, relu_backward
from deepconv.testing import assert_gradient_close, assert_race_free, numeric_gradient

from conftest import assert_bitwise_equal, assert_rejected, on

# Named problem list: shapes with odd sizes and edge cases. "grid" has more
# elements than one grid of the launcher covers, so the grid-stride loop and
# the vector tail both run.
PROBLEMS = {
    "one": (1,),
    "seven": (7,),
    "odd_nchw": (2, 3, 5, 7),
    "vector_tail": (4099,),
    "grid": (1000003,),
    "empty": (0,),
    "empty_nchw": (2, 0, 3, 3),
    "scalar": (),
}
EMU_DEVICES = ["emu:0", "emu:1"]


def relu_reference(x):
    return np.where(x < 0, x.dtype.type(0), x)  # NaN and -0.0 pass through


def relu_backward_reference(y, dy):
    return np.where(y > 0, dy, dy.dtype.type(0))


def normal(rng, shape, dtype):
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def sample(rng, shape, dtype):
    """Normal values with exact zeros (the kink) and -0.0 mixed in."""
    x = normal(rng, shape, dtype)
    flat = x.reshape(-1)
    flat[::11] = 0
    flat[5::13] = -0.0
    return x


@pytest.mark.parametrize("problem", PROBLEMS)
def test_relu_matches_numpy(device, dtype, problem, rng):
    x_host = sample(rng, PROBLEMS[problem], dtype)
    x = on(device, x_host)
    y = relu(x)
    assert deepconv.device_of(y) == device
    assert_bitwise_equal(y, relu_reference(x_host))
    assert_bitwise_equal(x, x_host)  # input untouched


@pytest.mark.parametrize("problem", PROBLEMS)
def test_relu_backward_matches_numpy(device, dtype, problem, rng):
    y_host = relu_reference(sample(rng, PROBLEMS[problem], dtype))
    dy_host = normal(rng, PROBLEMS[problem], dtype)
    y, dy = on(device, y_host), on(device, dy_host)
    dx = relu_backward(y, dy)
    assert deepconv.device_of(dx) == device
    assert_bitwise_equal(dx, relu_backward_reference(y_host, dy_host))
    assert_bitwise_equal(dy, dy_host)


@pytest.mark.parametrize("n", [1, 7, 1000003])
def test_relu_in_place(device, dtype, n, rng):
    x_host = sample(rng, (n,), dtype)
    x = on(device, x_host)
    assert relu(x, out=x) is x
    assert_bitwise_equal(x, relu_reference(x_host))


@pytest.mark.parametrize("n", [1, 7, 1000003])
def test_relu_backward_in_place(device, dtype, n, rng):
    y_host = relu_reference(sample(rng, (n,), dtype))
    dy_host = normal(rng, n, dtype)
    y, dy = on(device, y_host), on(device, dy_host)
    assert relu_backward(y, dy, out=dy) is dy
    assert_bitwise_equal(dy, relu_backward_reference(y_host, dy_host))


def test_relu_into_separate_out(device, dtype, rng):
    x_host = sample(rng, (3, 33), dtype)
    x = on(device, x_host)
    out = deepconv.zeros((3, 33), dtype, device=device)
    assert relu(x, out=out) is out
    assert_bitwise_equal(out, relu_reference(x_host))


def test_nan_and_infinities(device, dtype):
    specials = [np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, -1.0, 2.0, np.nan]
    x_host = np.array(specials, dtype=dtype)
    y = deepconv.to_numpy(relu(on(device, x_host)))
    assert np.isnan(y[[0, 1, 8]]).all()
    assert_bitwise_equal(y, relu_reference(x_host))
    # backward: where y is NaN the gradient is 0 (NaN > 0 is False)
    dy_host = np.arange(1, len(specials) + 1, dtype=dtype)
    dx = relu_backward(on(device, relu_reference(x_host)),
                       on(device, dy_host))
    assert_bitwise_equal(dx, np.array([0, 0, 3, 0, 0, 0, 0, 8, 0], dtype=dtype))


def test_unaligned_views(dtype, rng):
    # C-contiguous views that start 1 element in: only element-aligned, so
    # the launcher must not take the 16-byte vector path.
    base = deepconv.asarray(sample(rng, (1001,), dtype), device="emu:1")
    x = base[1:]
    assert x.ctypes.data % 16 != 0
    assert_bitwise_equal(relu(x), relu_reference(np.array(x)))
    out = deepconv.empty(1001, dtype, device="emu:1")[1:]
    relu(x, out=out)
    assert_bitwise_equal(out, relu_reference(np.array(x)))
    dy = deepconv.asarray(sample(rng, (1001,), dtype), device="emu:1")[1:]
    assert_bitwise_equal(relu_backward(out, dy), relu_backward_reference(np.array(out), np.array(dy)))


def test_read_only_input_is_fine(dtype, rng):
    x_host = sample(rng, (50,), dtype)
    x_host.flags.writeable = False
    assert_bitwise_equal(relu(x_host), relu_reference(x_host))


def test_bitwise_repeatable(device, dtype, rng):
    x = deepconv.asarray(sample(rng, (70001,), dtype), device=device)
    dy = deepconv.asarray(normal(rng, 70001, dtype), device=device)
    first, second = relu(x), relu(x)
    assert_bitwise_equal(first, deepconv.to_numpy(second))
    assert_bitwise_equal(relu_backward(first, dy), deepconv.to_numpy(relu_backward(second, dy)))


@pytest.mark.parametrize("device_name", EMU_DEVICES)
@pytest.mark.parametrize("n", [7, 4099])
def test_race_free(device_name, dtype, n, rng):
    x = deepconv.asarray(sample(rng, (n,), dtype), device=device_name)
    dy = deepconv.asarray(normal(rng, n, dtype), device=device_name)
    assert_race_free(relu, x)
    assert_race_free(lambda a: relu(a, out=a), x)
    assert_race_free(relu_backward, relu(x), dy)
    assert_race_free(lambda y, g: relu_backward(y, g, out=g), relu(x), dy)


def test_numeric_gradient_float64(rng):
    # f(x) = sum(relu(x) * r); df/dx by central differences, with the
    # elements near the kink at 0 masked out, against relu_backward(relu(x), r).
    x = rng.uniform(-1.0, 1.0, 40)
    x[:3] = [0.0, 1e-9, -1e-9]
    r = rng.standard_normal(40)

    def loss():
        return np.sum(deepconv.to_numpy(relu(deepconv.asarray(x, device="emu:1"))) * r)

    numeric = numeric_gradient(loss, x)
    y = relu(deepconv.asarray(x, device="emu:1"))
    analytic = relu_backward(y, deepconv.asarray(r, device="emu:1"))
    assert_gradient_close(analytic, numeric, rtol=1e-7, atol=1e-9, ignore=np.abs(x) < 1e-5)


# --- bad input -------------------------------------------------------------------


def _arrays():
    x = deepconv.asarray(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), device="emu:1")
    readonly = deepconv.zeros((3, 4), np.float32, device="emu:1")
    readonly.flags.writeable = False
    flat = deepconv.zeros(13, np.float32, device="emu:1")
    return {
        "x": x,
        "x64": deepconv.asarray(x, dtype=np.float64),
        "other_device": deepconv.zeros((3, 4), np.float32, device="emu:2"),
        "readonly": readonly,
        "wrong_shape": deepconv.zeros((4, 3), np.float32, device="emu:1"),
        "ints": deepconv.zeros((3, 4), np.int32, device="emu:1"),
        "halves": deepconv.zeros((3, 4), np.float16, device="emu:1"),
        "strided": deepconv.zeros((3, 8), np.float32, device="emu:1")[:, ::2],
        "shifted_a": flat[:12].reshape(3, 4),
        "shifted_b": flat[1:].reshape(3, 4),
    }


BAD_CALLS = {
    "x_list": (lambda a: relu([1.0, -1.0]), TypeError, r"^x: expected a numpy.ndarray .*got list"),
    "x_int": (lambda a: relu(a["ints"]), TypeError, r"^x: expected dtype float32 or float64, got int32"),
    "x_half": (lambda a: relu(a["halves"]), TypeError, r"^x: expected dtype float32 or float64, got float16"),
    "x_strided": (lambda a: relu(a["strided"]), ValueError, r"^x: expected a C-contiguous array"),
    "out_list": (lambda a: relu(a["x"], out=[0.0]), TypeError, r"^out: expected a numpy.ndarray"),
    "out_shape": (lambda a: relu(a["x"], out=a["wrong_shape"]), ValueError,
                  r"^out: expected the shape of x \(3, 4\), got \(4, 3\)"),
    "out_dtype": (lambda a: relu(a["x"], out=a["x64"]), TypeError,
                  r"^out: expected the dtype of x \(float32\), got float64"),
    "out_readonly": (lambda a: relu(a["x"], out=a["readonly"]), ValueError, r"^out: the array is read-only"),
    "out_strided": (lambda a: relu(a["x"], out=a["strided"]), ValueError, r"^out: expected a C-contiguous"),
    "out_device": (lambda a: relu(a["x"], out=a["other_device"]), ValueError,
                   r"arrays are on different devices: x is on emu:1, out is on emu:2"),
    "out_overlap": (lambda a: relu(a["shifted_a"], out=a["shifted_b"]), ValueError,
                    r"^out: overlaps x without being the same array"),
    "y_list": (lambda a: relu_backward((1.0,), a["x"]), TypeError, r"^y: expected a numpy.ndarray .*got tuple"),
    "dy_list": (lambda a: relu_backward(a["x"], "dy"), TypeError, r"^dy: expected a numpy.ndarray .*got str"),
    "y_strided": (lambda a: relu_backward(a["strided"], a["x"]), ValueError, r"^y: expected a C-contiguous"),
    "dy_int": (lambda a: relu_backward(a["x"], a["ints"]), TypeError, r"^dy: expected dtype float32 or float64"),
    "dy_shape": (lambda a: relu_backward(a["x"], a["wrong_shape"]), ValueError,
                 r"^dy: expected the shape of y \(3, 4\), got \(4, 3\)"),
    "dy_dtype": (lambda a: relu_backward(a["x"], a["x64"]), TypeError, r"^dy: expected the dtype of y"),
    "dy_device": (lambda a: relu_backward(a["x"], a["other_device"]), ValueError,
                  r"y is on emu:1, dy is on emu:2"),
    "dx_shape": (lambda a: relu_backward(a["x"], a["x"], out=a["wrong_shape"]), ValueError,
                 r"^out: expected the shape of y"),
    "dx_readonly": (lambda a: relu_backward(a["x"], a["wrong_shape"].reshape(3, 4), out=a["readonly"]), ValueError,
                    r"^out: the array is read-only"),
    "dx_is_y": (lambda a: relu_backward(a["x"], a["wrong_shape"].reshape(3, 4), out=a["x"]), ValueError,
                r"^out: shares memory with y"),
    "dx_overlaps_dy": (lambda a: relu_backward(a["x"], a["shifted_a"], out=a["shifted_b"]), ValueError,
                       r"^out: overlaps dy without being the same array"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input(case):
    call, error, message = BAD_CALLS[case]
    assert_rejected(call, error, message, _arrays())
