"""Devices, memory domains, transfers and the backend interface."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deepconv
from deepconv.backend import backend_for, emu_device_count
from deepconv.backend import cuda as cuda_backend
from deepconv.backend.emu import ALIGNMENT, EmuBuffer

NO_CUDA = pytest.mark.skipif(deepconv.cuda_available(), reason="a CUDA device is available here")


@pytest.fixture(autouse=True)
def _default_emu_devices(monkeypatch):
    monkeypatch.delenv("DEEPCONV_EMU_DEVICES", raising=False)


# --- device parsing -----------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("emu:0", ("emu", 0)),
        ("emu:7", ("emu", 7)),
        ("emu", ("emu", 0)),
        (" emu:3 ", ("emu", 3)),
        (deepconv.Device("emu", 2), ("emu", 2)),
    ],
)
def test_device_parses(spec, expected):
    dev = deepconv.device(spec)
    assert (dev.type, dev.index) == expected
    assert str(dev) == f"{expected[0]}:{expected[1]}"


def test_device_is_frozen_and_hashable():
    dev = deepconv.device("emu:1")
    with pytest.raises(AttributeError):
        dev.index = 2
    assert dev == deepconv.Device("emu", 1)
    assert len({dev, deepconv.device("emu:1"), deepconv.device("emu:0")}) == 2
    assert repr(dev) == "deepconv.device('emu:1')"


@pytest.mark.parametrize("spec", ["gpu:0", "emu:", "emu:-1", "emu:x", "EMU:0", "cuda:0:1", "", "emu:1.5"])
def test_device_rejects_bad_spelling(spec):
    with pytest.raises(ValueError, match=r"device: expected 'emu', 'emu:<index>', 'cuda'"):
        deepconv.device(spec)


@pytest.mark.parametrize("spec", [0, None, 1.0, ("emu", 0)])
def test_device_rejects_wrong_type(spec):
    with pytest.raises(TypeError, match=r"device: expected .* got "):
        deepconv.device(spec)


def test_device_constructor_validates():
    with pytest.raises(ValueError, match="Device.type"):
        deepconv.Device("tpu", 0)
    with pytest.raises(ValueError, match="Device.index"):
        deepconv.Device("emu", -1)


def test_emu_index_out_of_range_names_the_count():
    with pytest.raises(ValueError, match=r"'emu:8' is out of range: there are 8 emulated devices"):
        deepconv.device("emu:8")


def test_emu_device_count_from_environment(monkeypatch):
    monkeypatch.setenv("DEEPCONV_EMU_DEVICES", "3")
    assert emu_device_count() == 3
    assert [str(d) for d in deepconv.devices()] == ["emu:0", "emu:1", "emu:2"]
    deepconv.device("emu:2")
    with pytest.raises(ValueError, match="there are 3 emulated devices"):
        deepconv.device("emu:3")
    monkeypatch.setenv("DEEPCONV_EMU_DEVICES", "zero")
    with pytest.raises(ValueError, match="DEEPCONV_EMU_DEVICES: expected a positive integer"):
        deepconv.devices()


@NO_CUDA
def test_cuda_device_is_refused_with_reason():
    with pytest.raises(ValueError, match=r"device: 'cuda:0' is not available: "):
        deepconv.device("cuda:0")
    with pytest.raises(ValueError, match=r"'cuda:0' is not available"):
        deepconv.device("cuda")


# --- devices() and cuda_available() -------------------------------------------


def test_devices_lists_every_emulated_device():
    found = deepconv.devices()
    assert [d for d in found if d.type == "emu"] == [deepconv.Device("emu", i) for i in range(8)]
    assert all(d.type == "cuda" for d in found[8:])
    assert (len(found) > 8) == deepconv.cuda_available()


def test_cuda_available_is_false_without_a_gpu_and_does_not_raise():
    module = cuda_backend.module_or_none()
    gpu_here = module is not None and module.device_count() > 0
    assert deepconv.cuda_available() in (True, False)
    if not gpu_here:
        assert deepconv.cuda_available() is False
        assert deepconv.cuda_available() is False  # probed once, asked twice
        assert cuda_backend.unavailable_reason()


def test_import_does_not_need_cuda(tmp_path):
    # A fresh interpreter: importing deepconv must not import cupy or _cuda.
    code = (
        "import sys, deepconv; "
        "print('cupy' in sys.modules, 'deepconv._cuda' in sys.modules, deepconv.__version__)"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([
        str(Path(deepconv.__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env=env)  # not the repository root: no shadowing
    assert out.stdout.split() == ["False", "False", "0.1.0"]


def test_public_names():
    for name in [
        "device", "devices", "cuda_available", "Device", "asarray", "empty", "zeros",
        "to_device", "to_numpy", "device_of", "ops", "EmulatorError",
        "BarrierDivergenceError", "MisalignedAccessError", "LaunchConfigError",
    ]:
        assert hasattr(deepconv, name), name
    assert issubclass(deepconv.EmulatorError, RuntimeError)
    for cls in (deepconv.BarrierDivergenceError, deepconv.MisalignedAccessError,
                deepconv.LaunchConfigError):
        assert issubclass(cls, deepconv.EmulatorError)


# --- memory domains and device_of -----------------------------------------------


@pytest.mark.parametrize("make", [deepconv.empty, deepconv.zeros])
def test_allocations_belong_to_their_device(make):
    a = make((3, 5), np.float32, device="emu:3")
    assert isinstance(a, np.ndarray)
    assert a.shape == (3, 5) and a.dtype == np.float32
    assert deepconv.device_of(a) == deepconv.device("emu:3")
    # views of any kind keep the device
    assert deepconv.device_of(a[1:, ::2]) == deepconv.device("emu:3")
    assert deepconv.device_of(a.T[1:]) == deepconv.device("emu:3")
    assert deepconv.device_of(a.reshape(-1)[2:]) == deepconv.device("emu:3")
    assert deepconv.device_of(a.view(np.int32)) == deepconv.device("emu:3")


def test_owner_object_is_at_the_end_of_the_base_chain():
    a = deepconv.empty(10, device="emu:2")
    owner = a
    while isinstance(owner, np.ndarray):
        owner = owner.base
    assert isinstance(owner, EmuBuffer)
    assert owner.device == deepconv.device("emu:2")


def test_plain_numpy_counts_as_emu0():
    assert deepconv.device_of(np.ones(4)) == deepconv.device("emu:0")
    # numpy arithmetic makes a new, plain array: it is on emu:0
    a = deepconv.zeros(4, device="emu:5")
    assert deepconv.device_of(a + 1) == deepconv.device("emu:0")


def test_zeros_is_zero():
    a = deepconv.zeros((2, 3), np.float64, device="emu:1")
    assert np.array_equal(a, np.zeros((2, 3)))


@pytest.mark.parametrize("bad", [[1.0, 2.0], 3.0, "emu:0", None])
def test_device_of_rejects_non_arrays(bad):
    with pytest.raises(TypeError, match=r"arr: expected a numpy.ndarray .* or a cupy.ndarray"):
        deepconv.device_of(bad)


@pytest.mark.parametrize("nbytes_shape", [(), (0,), (1,), (3,), (17, 3), (1000,)])
@pytest.mark.parametrize("dt", [np.float32, np.float64, np.int8])
def test_allocations_are_64_byte_aligned(nbytes_shape, dt):
    for dev in ("emu:0", "emu:4"):
        a = deepconv.empty(nbytes_shape, dt, device=dev)
        assert a.ctypes.data % ALIGNMENT == 0
        assert a.flags.c_contiguous and a.flags.writeable
        assert a.shape == nbytes_shape


def test_empty_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shape: dimensions must be >= 0"):
        deepconv.empty((2, -1))
    with pytest.raises(TypeError, match="shape: expected an int or a sequence of ints"):
        deepconv.empty("abc")
    with pytest.raises(TypeError, match="dtype: arrays of Python objects"):
        deepconv.empty(3, object)
    with pytest.raises(ValueError, match="device: 'emu:99' is out of range"):
        deepconv.empty(3, device="emu:99")


# --- asarray --------------------------------------------------------------------


def test_asarray_from_list_lands_on_device():
    a = deepconv.asarray([[1, 2], [3, 4]], dtype=np.float32, device="emu:2")
    assert deepconv.device_of(a) == deepconv.device("emu:2")
    assert a.dtype == np.float32 and a.ctypes.data % ALIGNMENT == 0
    assert np.array_equal(a, [[1, 2], [3, 4]])
    assert deepconv.transfer_stats() == {}  # a list is not on any device


def test_asarray_returns_ready_arrays_unchanged():
    a = deepconv.zeros(8, device="emu:1")
    assert deepconv.asarray(a) is a
    assert deepconv.asarray(a, dtype=np.float32, device="emu:1") is a


def test_asarray_makes_contiguous_aligned_copies_on_the_same_device():
    a = deepconv.asarray(np.arange(24.0).reshape(4, 6), device="emu:1")
    strided = a[:, ::2]
    b = deepconv.asarray(strided)
    assert b.flags.c_contiguous and np.array_equal(b, strided)
    assert deepconv.device_of(b) == deepconv.device("emu:1")
    shifted = a.reshape(-1)[1:]  # C-contiguous but only 8-byte aligned
    c = deepconv.asarray(shifted)
    assert c.ctypes.data % 16 == 0 and np.array_equal(c, shifted)
    d = deepconv.asarray(a, dtype=np.float32)
    assert d.dtype == np.float32 and deepconv.device_of(d) == deepconv.device("emu:1")
    assert deepconv.transfer_stats() == {("emu:0", "emu:1"): 24 * 8}


# --- transfers ------------------------------------------------------------------


def test_to_device_copies_between_emulated_devices():
    a = deepconv.asarray(np.arange(6, dtype=np.float32).reshape(2, 3), device="emu:1")
    deepconv.reset_transfer_stats()
    b = deepconv.to_device(a, "emu:2")
    assert deepconv.device_of(b) == deepconv.device("emu:2")
    assert np.array_equal(b, a) and b.dtype == a.dtype
    assert not np.shares_memory(a, b)
    c = deepconv.to_device(b[:, 1], deepconv.device("emu:1"))
    assert c.flags.c_contiguous and np.array_equal(c, [1, 4])
    assert deepconv.transfer_stats() == {("emu:1", "emu:2"): 24, ("emu:2", "emu:1"): 8}


def test_to_device_same_device_is_a_no_op():
    a = deepconv.zeros(4, device="emu:3")
    assert deepconv.to_device(a, "emu:3") is a
    assert deepconv.transfer_stats() == {}


def test_transfer_counter_accumulates_and_resets():
    a = np.ones(100, dtype=np.float32)
    deepconv.to_device(a, "emu:1")
    deepconv.to_device(a, "emu:1")
    deepconv.to_device(a, "emu:2")
    assert deepconv.transfer_stats() == {("emu:0", "emu:1"): 800, ("emu:0", "emu:2"): 400}
    stats = deepconv.transfer_stats()
    stats.clear()  # a copy: the counter is untouched
    assert deepconv.transfer_stats()[("emu:0", "emu:1")] == 800
    deepconv.reset_transfer_stats()
    assert deepconv.transfer_stats() == {}


def test_to_device_rejects_bad_arguments():
    with pytest.raises(TypeError, match="arr: expected a numpy.ndarray"):
        deepconv.to_device([1, 2], "emu:1")
    with pytest.raises(ValueError, match="device: expected 'emu'"):
        deepconv.to_device(np.ones(2), "gpu:1")
    if not deepconv.cuda_available():
        with pytest.raises(ValueError, match="'cuda:0' is not available"):
            deepconv.to_device(np.ones(2), "cuda:0")


def test_to_numpy_returns_numpy_unchanged():
    a = deepconv.zeros(3, device="emu:2")
    assert deepconv.to_numpy(a) is a
    with pytest.raises(TypeError, match="arr: expected a numpy.ndarray"):
        deepconv.to_numpy([1.0])


# --- mixing devices -------------------------------------------------------------


def test_check_same_device():
    x = deepconv.zeros(3, device="emu:1")
    w = deepconv.zeros(3, device="emu:1")
    assert deepconv.check_same_device(x=x, w=w, b=None) == deepconv.device("emu:1")
    w0 = np.zeros(3)
    message = (
        "arrays are on different devices: x is on emu:1, w is on emu:0; "
        "move one with deepconv.to_device(...)"
    )
    with pytest.raises(ValueError) as info:
        deepconv.check_same_device(x=x, w=w0)
    assert str(info.value) == message
    with pytest.raises(TypeError, match="w: expected a numpy.ndarray"):
        deepconv.check_same_device(x=x, w=[0.0])


def test_ops_refuse_to_mix_devices():
    x = deepconv.asarray(np.ones(4, np.float32), device="emu:1")
    out = deepconv.empty(4, np.float32, device="emu:2")
    with pytest.raises(ValueError, match="x is on emu:1, out is on emu:2"):
        deepconv.ops.relu(x, out=out)


# --- backend interface ----------------------------------------------------------


def test_emu_backend_interface():
    dev = deepconv.device("emu:1")
    be = backend_for(dev)
    assert be.module.BACKEND == "emu"
    assert be.stream_handle(dev) == 0
    a = be.empty((4, 4), np.float32, dev)
    assert deepconv.device_of(a) == dev
    assert be.pointer(a) == a.ctypes.data and be.pointer(a) % ALIGNMENT == 0


@NO_CUDA
def test_cuda_backend_fails_cleanly_without_cuda():
    be = backend_for(deepconv.Device("cuda", 0))
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        be.empty((2,), np.float32, deepconv.Device("cuda", 0))


# --- deepconv.testing -------------------------------------------------------------


def test_race_check_context_switches_and_restores():
    from deepconv import _emu
    from deepconv.testing import race_check

    assert _emu.race_check() is False
    with race_check(seed=7):
        assert _emu.race_check() is True and _emu.settings()["seed"] == 7
        with race_check(seed=9):
            assert _emu.settings()["seed"] == 9
        assert _emu.race_check() is True and _emu.settings()["seed"] == 7
    assert _emu.race_check() is False
    with pytest.raises(KeyError):
        with race_check(seed=3):
            raise KeyError("restored even when the body raises")
    assert _emu.race_check() is False


def test_assert_race_free_passes_and_copies_args_fresh():
    from deepconv.testing import assert_race_free

    def bump(x, pair):
        x += 1  # in place: each run must start from the same x
        pair[0][...] = x * 2
        return x.sum()

    x = deepconv.zeros(5, np.float32, device="emu:1")
    result = assert_race_free(bump, x, [deepconv.zeros(5, np.float32, device="emu:1")])
    assert result["returned"] == 5.0
    assert np.all(result["args"][0] == 1) and np.all(result["args"][1][0] == 2)
    assert deepconv.device_of(result["args"][0]) == deepconv.device("emu:1")
    assert np.all(x == 0)  # the caller's arrays are never touched


def test_assert_race_free_reports_schedule_dependence():
    from deepconv import _emu
    from deepconv.testing import assert_race_free

    def flaky(x):
        if _emu.race_check():
            x[2:5] = -0.0  # differs from +0.0 in bits only
        return x

    with pytest.raises(AssertionError, match=r"race-check seed 1 .*returned: 3 of 10 elements differ, "
                                             r"first at index \(2,\)"):
        assert_race_free(flaky, deepconv.zeros(10, device="emu:2"))
    with pytest.raises(AssertionError, match=r"args\[0\]: 3 of 10 elements differ"):
        assert_race_free(flaky, deepconv.zeros(10, device="emu:2"))


def test_synchronize_is_a_no_op_on_emulated_devices_and_validates_its_argument():
    for dev in ("emu:0", deepconv.device("emu:1")):
        assert deepconv.synchronize(dev) is None
    with pytest.raises(ValueError, match="device"):
        deepconv.synchronize("tpu:0")


def test_scratch_memory_is_reused_per_device_and_grows_on_demand():
    from deepconv.backend import backend_for
    from deepconv.backend.scratch import scratch

    dev = deepconv.device("emu:1")
    be = backend_for(dev)
    first = scratch(be, dev, 100, "test")
    assert first.nbytes >= 100 and deepconv.device_of(first) == dev
    assert scratch(be, dev, 50, "test") is first  # smaller request: same buffer
    bigger = scratch(be, dev, 1000, "test")
    assert bigger.nbytes >= 1000 and bigger is not first
    assert scratch(be, deepconv.device("emu:2"), 50, "test") is not bigger  # per device
