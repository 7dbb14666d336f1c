"""Arrays on devices: allocation, which device an array is on, transfers.

An array on an emulated device is a ``numpy.ndarray``; on a CUDA device a
``cupy.ndarray``. deepconv allocations on emulated devices are owned by an
:class:`~deepconv.backend.emu.EmuBuffer` naming the device; a plain numpy
array (one deepconv did not allocate, or the result of ordinary numpy
arithmetic) counts as being on ``emu:0``.

Moving data between devices is always explicit (:func:`to_device`,
:func:`to_numpy`, or :func:`asarray` with a ``device``), and every byte moved
between two different devices is counted per (source, destination) pair in
:func:`transfer_stats`.
"""

from __future__ import annotations

import threading

import numpy as np

from deepconv.backend.cuda import is_cupy_array
from deepconv.backend.device import Device, backend_for
from deepconv.backend.device import device as _device
from deepconv.backend.emu import EmuBuffer, host_dtype

# Kernels read and write with 16-byte vector accesses (float4, double2).
KERNEL_ALIGNMENT = 16

_HOST_DEVICE = Device("emu", 0)

_transfers_lock = threading.Lock()
_transfers: dict[tuple[str, str], int] = {}


def is_array(obj) -> bool:
    """True for the array types devices hold: numpy.ndarray or cupy.ndarray."""
    return isinstance(obj, np.ndarray) or is_cupy_array(obj)


def device_of(arr, *, arg: str = "arr") -> Device:
    """The device that holds ``arr``.

    A numpy array is on the emulated device whose :class:`EmuBuffer` owns its
    memory (found by walking the ``.base`` chain), and on ``emu:0`` when no
    deepconv buffer owns it. A cupy array is on ``cuda:<arr.device.id>``.
    Anything else raises TypeError naming ``arg``.
    """
    if isinstance(arr, np.ndarray):
        owner = arr
        while isinstance(owner, np.ndarray):
            owner = owner.base
        return owner.device if isinstance(owner, EmuBuffer) else _HOST_DEVICE
    if is_cupy_array(arr):
        return Device("cuda", arr.device.id)
    raise TypeError(
        f"{arg}: expected a numpy.ndarray (emulated device) or a cupy.ndarray (CUDA device), "
        f"got {type(arr).__name__}"
    )


def check_same_device(**arrays) -> Device:
    """The one device holding every array passed (``None`` values are
    skipped); ValueError listing where each array is if they differ."""
    where = {name: device_of(a, arg=name) for name, a in arrays.items() if a is not None}
    if not where:
        raise TypeError("check_same_device: expected at least one array")
    found = set(where.values())
    if len(found) > 1:
        listing = ", ".join(f"{name} is on {dev}" for name, dev in where.items())
        raise ValueError(
            f"arrays are on different devices: {listing}; move one with deepconv.to_device(...)"
        )
    return found.pop()


def empty(shape, dtype="float32", device="emu:0"):
    """An uninitialised array on ``device`` (64-byte aligned on emulated
    devices)."""
    dev = _device(device)
    return backend_for(dev).empty(shape, host_dtype(dtype), dev)


def zeros(shape, dtype="float32", device="emu:0"):
    """A zero-filled array on ``device``."""
    dev = _device(device)
    be = backend_for(dev)
    out = be.empty(shape, host_dtype(dtype), dev)
    with be.activate(dev):
        out.fill(0)
    return out


def to_device(arr, device):
    """``arr`` copied to ``device`` (C-contiguous, same shape and dtype).

    Returns ``arr`` itself when it is already on ``device``. Copies between
    two devices are counted in :func:`transfer_stats`.
    """
    src = device_of(arr, arg="arr")
    dst = _device(device)
    if src == dst:
        return arr
    out = backend_for(dst).copy_in(arr, dst)
    _record_transfer(src, dst, arr.nbytes)
    return out


def to_numpy(arr) -> np.ndarray:
    """``arr`` as a numpy array: numpy arrays (any emulated device) are
    returned as they are; a cupy array is copied to the host, counted as a
    transfer to ``emu:0`` (where plain numpy arrays live)."""
    if isinstance(arr, np.ndarray):
        return arr
    return to_device(arr, _HOST_DEVICE)


def asarray(obj, dtype=None, device=None):
    """``obj`` as an array ready for deepconv kernels: C-contiguous, 16-byte
    aligned, of ``dtype`` (default: keep it), on ``device``.

    For an array, ``device=None`` keeps its device; a different device means
    an explicit transfer (counted). Anything else (lists, scalars, buffers)
    goes through ``numpy.asarray`` and lands on ``device`` (default emu:0).
    Like ``numpy.asarray``, no copy is made when ``obj`` already qualifies.
    """
    if not is_array(obj):
        host = np.asarray(obj, dtype=dtype)
        dst = _device("emu:0" if device is None else device)
        return backend_for(dst).copy_in(host, dst)
    src = device_of(obj, arg="obj")
    dst = src if device is None else _device(device)
    arr = to_device(obj, dst)
    want = arr.dtype if dtype is None else host_dtype(dtype)
    if arr.dtype == want and _kernel_ready(arr, backend_for(dst)):
        return arr
    be = backend_for(dst)
    out = be.empty(arr.shape, want, dst)
    with be.activate(dst):
        out[...] = arr
    return out


def _kernel_ready(arr, be) -> bool:
    if not arr.flags.c_contiguous:
        return False
    return arr.size == 0 or be.pointer(arr) % KERNEL_ALIGNMENT == 0


def _record_transfer(src: Device, dst: Device, nbytes: int) -> None:
    key = (str(src), str(dst))
    with _transfers_lock:
        _transfers[key] = _transfers.get(key, 0) + nbytes


def transfer_stats() -> dict[tuple[str, str], int]:
    """Bytes copied between devices since the last reset, keyed by
    ``(source, destination)`` device names, e.g. ``("emu:0", "emu:1")``."""
    with _transfers_lock:
        return dict(_transfers)


def reset_transfer_stats() -> None:
    """Forget all counted transfers."""
    with _transfers_lock:
        _transfers.clear()
