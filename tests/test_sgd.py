"""deepconv.ops.sgd_update against numpy, on every device."""

from fractions import Fraction

import numpy as np
import pytest

import deepconv
from deepconv.ops import sgd_update
from deepconv.testing import assert_race_free

from conftest import assert_bitwise_equal, on

# Named problem lists: the parameter shapes updated in one call.
PROBLEMS = {
    "one": [(1,)],
    "seven": [(7,)],
    "grid": [(1000003,)],
    "empty": [(0,)],
    "mixed": [(96, 3, 11, 11), (96,), (0,), (7,), (13, 5), (1,)],
    "many": [(i % 9 + 1,) for i in range(150)],  # more tensors than one launch takes
}
def sgd_reference(w, g, v, lr, momentum, weight_decay):
    """The AlexNet rule in w's dtype, plain numpy rounding: the new (w, v)."""
    t = w.dtype.type
    v = t(momentum) * v - t(weight_decay) * t(lr) * w - t(lr) * g
    return w + v, v


def round_to(value, t):
    """The exact rational ``value`` rounded to the nearest ``t`` (numpy
    float32/float64), ties to even, as IEEE hardware rounds."""
    guess = t(float(value))
    candidates = [np.nextafter(guess, t(-np.inf)), guess, np.nextafter(guess, t(np.inf))]
    bits = np.dtype(f"u{np.dtype(t).itemsize}")
    return min(candidates, key=lambda c: (abs(Fraction(float(c)) - value), int(c.view(bits)) & 1))


def fma_exact(a, b, c, t):
    return round_to(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)), t)


def sgd_exact(w, g, v, lr, momentum, weight_decay):
    """The kernel's rounding, step by step (csrc/kernels/sgd.cuh): products
    and sums rounded in w's dtype, the two multiply-adds as exact FMAs."""
    t = w.dtype.type
    lr, momentum, decay = t(lr), t(momentum), t(weight_decay) * t(lr)
    w_new, v_new = np.empty_like(w), np.empty_like(v)
    for i in np.ndindex(w.shape):
        q = fma_exact(-decay, w[i], momentum * v[i], t)
        v_new[i] = fma_exact(-lr, g[i], q, t)
        w_new[i] = w[i] + v_new[i]
    return w_new, v_new


def make_state(rng, shapes, dtype, device):
    host = [
        [np.asarray(rng.standard_normal(shape), dtype=dtype) for shape in shapes] for _ in range(3)
    ]
    on_device = [[on(device, a) for a in group] for group in host]
    return host, on_device


def snapshot(arrays):
    return [np.array(deepconv.to_numpy(a)) for a in arrays]


def assert_step_close(params, vels, w, g, v, lr, momentum, weight_decay):
    """Each params[i]/vels[i] is one step from (w[i], g[i], v[i]) within the
    rounding of the four operations: a few ulp of the terms' magnitudes."""
    for i in range(len(w)):
        t = w[i].dtype.type
        w_ref, v_ref = sgd_reference(w[i], g[i], v[i], _item(lr, i), _item(momentum, i),
                                     _item(weight_decay, i))
        terms = (abs(t(_item(momentum, i)) * v[i]) + abs(t(_item(weight_decay, i) * _item(lr, i)) * w[i])
                 + abs(t(_item(lr, i)) * g[i]))
        ulp = np.finfo(t).eps
        actual_w, actual_v = deepconv.to_numpy(params[i]), deepconv.to_numpy(vels[i])
        assert actual_w.dtype == w[i].dtype and actual_w.shape == w[i].shape
        assert np.all(abs(actual_v - v_ref) <= 4 * ulp * terms), f"velocities[{i}]"
        assert np.all(abs(actual_w - w_ref) <= 4 * ulp * (abs(w[i]) + terms)), f"params[{i}]"


def _item(value, i):
    return value[i] if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("problem", PROBLEMS)
def test_sgd_matches_numpy(device, dtype, problem, rng):
    _, (params, grads, vels) = make_state(rng, PROBLEMS[problem], dtype, device)
    for _ in range(3):  # a few steps, so the velocity matters
        w, g, v = snapshot(params), snapshot(grads), snapshot(vels)
        sgd_update(params, grads, vels, 0.01, 0.9, 5e-4)
        assert_step_close(params, vels, w, g, v, 0.01, 0.9, 5e-4)
    assert all(deepconv.device_of(a) == device for a in params + vels)


def test_rounding_is_exactly_as_documented(device, dtype, rng):
    # The kernel spells out its rounding (explicit FMAs) so that the GPU and
    # the emulator agree to the bit; check those bits, not just closeness.
    shapes = [(37,), (2, 5), (0,), (1,)]
    (w, g, v), (params, grads, vels) = make_state(rng, shapes, dtype, device)
    lrs, momenta, decays = [0.01, 0.3, 0.1, 1.0], 0.9, [5e-4, 0.02, 0.0, 0.125]
    sgd_update(params, grads, vels, lrs, momenta, decays)
    for i in range(len(shapes)):
        w_new, v_new = sgd_exact(w[i], g[i], v[i], lrs[i], momenta, decays[i])
        assert_bitwise_equal(vels[i], v_new)
        assert_bitwise_equal(params[i], w_new)


def test_defaults_are_alexnets(dtype, rng):
    (w, g, v), (params, grads, vels) = make_state(rng, [(33,)], dtype, "emu:1")
    sgd_update(params, grads, vels, lr=0.01)
    assert_step_close(params, vels, w, g, v, 0.01, 0.9, 5e-4)


def test_per_tensor_hyperparameters(device, dtype, rng):
    shapes = [(10,), (0,), (3, 3), (5,)]
    (w, g, v), (params, grads, vels) = make_state(rng, shapes, dtype, device)
    lrs, momenta, decays = [0.1, 0.2, 0.01, 0.0], (0.9, 0.5, 0.0, 0.99), [5e-4, 0.0, 0.0, 1e-2]
    sgd_update(params, grads, vels, lrs, momenta, decays)
    assert_step_close(params, vels, w, g, v, lrs, momenta, decays)


def test_mixed_dtypes_in_one_call(rng):
    dtypes = [np.float32, np.float64, np.float32, np.float64, np.float32]
    shapes = [(17,), (9,), (0,), (4, 4), (1,)]
    host = [[np.asarray(rng.standard_normal(s), dtype=dt) for s, dt in zip(shapes, dtypes)] for _ in range(3)]
    params, grads, vels = ([on("emu:1", a) for a in group] for group in host)
    sgd_update(params, grads, vels, 0.05, 0.8, 1e-3)
    assert_step_close(params, vels, *host, 0.05, 0.8, 1e-3)


def test_grads_are_not_written(device, dtype, rng):
    (_, g, _), (params, grads, vels) = make_state(rng, [(11,), (300,)], dtype, device)
    sgd_update(params, grads, vels, 0.1)
    for i in range(2):
        assert_bitwise_equal(grads[i], g[i])


def test_read_only_grads_are_fine(dtype, rng):
    (w, g, v), (params, grads, vels) = make_state(rng, [(20,)], dtype, "emu:0")
    grads[0].flags.writeable = False
    sgd_update(params, grads, vels, 0.1)
    assert_step_close(params, vels, w, g, v, 0.1, 0.9, 5e-4)


def test_empty_list_is_a_no_op():
    sgd_update([], [], [], 0.1)
    sgd_update((), (), (), [], [], [])


def test_bitwise_repeatable(device, dtype, rng):
    shapes = PROBLEMS["mixed"]
    _, first = make_state(rng, shapes, dtype, device)
    second = [[deepconv.to_device(deepconv.to_numpy(a).copy(), device) for a in group] for group in first]
    for state in (first, second):
        sgd_update(*state, 0.01, 0.9, 5e-4)
    for a, b in zip(first[0] + first[2], second[0] + second[2]):
        assert_bitwise_equal(a, b)


@pytest.mark.parametrize("device_name", ["emu:0", "emu:1"])
def test_race_free(device_name, dtype, rng):
    shapes = [(4099,), (0,), (96,), (7, 3)] + [(5,)] * 70
    _, (params, grads, vels) = make_state(rng, shapes, dtype, device_name)
    assert_race_free(lambda p, g, v: sgd_update(p, g, v, 0.01, 0.9, 5e-4), params, grads, vels)


# --- bad input -------------------------------------------------------------------


def _state():
    def arr(shape, dtype=np.float32, device="emu:1"):
        return deepconv.asarray(np.full(shape, 0.5, dtype=dtype), device=device)

    readonly = arr(4)
    readonly.flags.writeable = False
    return {
        "w": [arr(4), arr((2, 3))],
        "g": [arr(4), arr((2, 3))],
        "v": [arr(4), arr((2, 3))],
        "readonly": readonly,
        "ints": arr(4, np.int64),
        "f64": arr((2, 3), np.float64),
        "shape3": arr(3),
        "extra": arr(4),
        "strided": arr(8)[::2],
        "other_device": arr((2, 3), device="emu:2"),
        "block": arr(10),  # velocities[1] and a gradient overlapping its tail
    }


def _with(seq, i, value):
    seq = list(seq)
    seq[i] = value
    return seq


BAD_CALLS = {
    "params_array": (lambda s: sgd_update(s["w"][0], s["g"], s["v"], 0.1), TypeError,
                     r"^params: expected a list of arrays, got ndarray"),
    "grads_none": (lambda s: sgd_update(s["w"], None, s["v"], 0.1), TypeError,
                   r"^grads: expected a list of arrays, got NoneType"),
    "grads_length": (lambda s: sgd_update(s["w"], s["g"][:1], s["v"], 0.1), ValueError,
                     r"^grads: expected one array per parameter \(2\), got 1"),
    "velocities_length": (lambda s: sgd_update(s["w"], s["g"], s["v"] * 2, 0.1), ValueError,
                          r"^velocities: expected one array per parameter \(2\), got 4"),
    "param_list": (lambda s: sgd_update(_with(s["w"], 1, [0.5] * 6), s["g"], s["v"], 0.1), TypeError,
                   r"^params\[1\]: expected a numpy.ndarray .*got list"),
    "grad_int": (lambda s: sgd_update(s["w"], _with(s["g"], 0, s["ints"]), s["v"], 0.1), TypeError,
                 r"^grads\[0\]: expected dtype float32 or float64, got int64"),
    "grad_dtype": (lambda s: sgd_update(s["w"], _with(s["g"], 1, s["f64"]), s["v"], 0.1), TypeError,
                   r"^grads\[1\]: expected the dtype of params\[1\] \(float32\), got float64"),
    "velocity_shape": (lambda s: sgd_update(s["w"], s["g"], _with(s["v"], 0, s["shape3"]), 0.1), ValueError,
                       r"^velocities\[0\]: expected the shape of params\[0\] \(4,\), got \(3,\)"),
    "param_strided": (lambda s: sgd_update(_with(s["w"], 0, s["strided"]), s["g"], s["v"], 0.1), ValueError,
                      r"^params\[0\]: expected a C-contiguous array"),
    "param_readonly": (lambda s: sgd_update(_with(s["w"], 0, s["readonly"]), s["g"], s["v"], 0.1), ValueError,
                       r"^params\[0\]: the array is read-only"),
    "velocity_readonly": (lambda s: sgd_update(s["w"], s["g"], _with(s["v"], 0, s["readonly"]), 0.1),
                          ValueError, r"^velocities\[0\]: the array is read-only"),
    "lr_nan": (lambda s: sgd_update(s["w"], s["g"], s["v"], float("nan")), ValueError,
               r"^lr: expected a finite value >= 0, got nan"),
    "lr_inf": (lambda s: sgd_update(s["w"], s["g"], s["v"], float("inf")), ValueError, r"^lr: expected a finite"),
    "lr_negative": (lambda s: sgd_update(s["w"], s["g"], s["v"], -0.1), ValueError,
                    r"^lr: expected a finite value >= 0, got -0.1"),
    "lr_str": (lambda s: sgd_update(s["w"], s["g"], s["v"], "0.1"), TypeError, r"^lr: expected a float"),
    "lr_bool": (lambda s: sgd_update(s["w"], s["g"], s["v"], True), TypeError, r"^lr: expected a float"),
    "lr_length": (lambda s: sgd_update(s["w"], s["g"], s["v"], [0.1, 0.1, 0.1]), ValueError,
                  r"^lr: expected one value per parameter tensor \(2\), got 3"),
    "lr_item_nan": (lambda s: sgd_update(s["w"], s["g"], s["v"], [0.1, float("nan")]), ValueError,
                    r"^lr\[1\]: expected a finite value >= 0"),
    "momentum_negative": (lambda s: sgd_update(s["w"], s["g"], s["v"], 0.1, momentum=-0.9), ValueError,
                          r"^momentum: expected a finite value >= 0"),
    "weight_decay_inf": (lambda s: sgd_update(s["w"], s["g"], s["v"], 0.1, weight_decay=float("inf")),
                         ValueError, r"^weight_decay: expected a finite value >= 0"),
    "param_twice": (lambda s: sgd_update(
        [s["w"][0], s["w"][0]], [s["g"][0], s["g"][0]], [s["v"][0], s["extra"]], 0.1), ValueError,
                    r"^params\[\d\] and params\[\d\] share memory"),
    "param_is_velocity": (lambda s: sgd_update(s["w"], s["g"], _with(s["v"], 1, s["w"][1]), 0.1), ValueError,
                          r"share memory"),
    "grad_is_param": (lambda s: sgd_update(s["w"], _with(s["g"], 0, s["w"][0]), s["v"], 0.1), ValueError,
                      r"^grads\[0\] and params\[0\] share memory"),
    "grad_in_velocity_tail": (lambda s: sgd_update(
        s["w"], _with(s["g"], 0, s["block"][4:8]), _with(s["v"], 1, s["block"][:6].reshape(2, 3)),
        0.1), ValueError, r"^grads\[0\] and velocities\[1\] share memory"),
    "devices_mixed": (lambda s: sgd_update(s["w"], _with(s["g"], 1, s["other_device"]), s["v"], 0.1),
                      ValueError, r"^arrays are on different devices: .*grads\[1\] is on emu:2"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_bad_input(case):
    call, error, message = BAD_CALLS[case]
    state = _state()
    everything = state["w"] + state["g"] + state["v"]
    with pytest.raises(error, match=message):
        call(state)
    for arr in everything:  # validation happens before any write
        assert np.all(deepconv.to_numpy(arr) == 0.5)
