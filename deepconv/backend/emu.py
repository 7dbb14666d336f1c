"""The emulator backend: kernels from ``deepconv._emu`` on host memory.

Every emulated device (``emu:0`` ... ``emu:<N-1>``) is its own memory domain,
as separate GPUs are: an array belongs to the device that allocated it, and
ops refuse to mix arrays of two devices. An emulated array is a plain
``numpy.ndarray`` whose memory is owned by an :class:`EmuBuffer`; the buffer
records the device and every view keeps it reachable through ``.base``.
Allocations are 64-byte aligned (a cache line), which covers the 16-byte
alignment of the kernels' ``float4`` / ``double2`` vector accesses.
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Iterable

import numpy as np

try:
    from deepconv import _emu
except ImportError as exc:  # a source checkout that was never built
    raise ImportError(
        "deepconv._emu (the CPU emulator backend) is not built; install deepconv "
        f"with `pip install .` from the repository root ({exc})"
    ) from exc

ALIGNMENT = 64

EmulatorError = _emu.EmulatorError
BarrierDivergenceError = _emu.BarrierDivergenceError
MisalignedAccessError = _emu.MisalignedAccessError
LaunchConfigError = _emu.LaunchConfigError
AsyncCopyError = _emu.AsyncCopyError


class EmuBuffer:
    """64-byte aligned host memory owned by one emulated device.

    numpy wraps it through ``__array_interface__``, so arrays made from it
    have it (possibly through other arrays) as their ``.base``; that is how
    :func:`deepconv.device_of` finds an array's device.
    """

    def __init__(self, nbytes: int, device):
        # Over-allocate and start at the first aligned byte; the raw block
        # lives as long as this buffer, and the buffer as long as any view.
        self._raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
        self._address = self._raw.ctypes.data + (-self._raw.ctypes.data) % ALIGNMENT
        self.nbytes = nbytes
        self.device = device

    @property
    def __array_interface__(self):
        return {
            "version": 3,
            "shape": (self.nbytes,),
            "typestr": "|u1",
            "data": (self._address, False),
        }

    def __repr__(self) -> str:
        return f"EmuBuffer({self.nbytes} bytes on {self.device})"


def normalize_shape(shape) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints (an int means a 1-D shape)."""
    try:
        if isinstance(shape, Iterable) and not isinstance(shape, (str, bytes)):
            dims = tuple(operator.index(d) for d in shape)
        else:
            dims = (operator.index(shape),)
    except TypeError:
        raise TypeError(f"shape: expected an int or a sequence of ints, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"shape: dimensions must be >= 0, got {dims}")
    return dims


def host_dtype(dtype) -> np.dtype:
    """``dtype`` as a numpy dtype that can live in raw device memory."""
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise TypeError(f"dtype: arrays of Python objects cannot live on a device, got {dt}")
    return dt


class EmuBackend:
    """Backend interface (shared with ``CudaBackend``) for emulated devices."""

    type = "emu"
    module = _emu

    def activate(self, device):
        """Context in which to launch on ``device``: nothing to select here."""
        return contextlib.nullcontext()

    def stream_handle(self, device) -> int:
        """The emulator runs every launch to completion; its stream is 0."""
        return 0

    def pointer(self, arr) -> int:
        return arr.ctypes.data

    def synchronize(self, device) -> None:
        """Emulated launches have finished when they return."""

    def empty(self, shape, dtype, device) -> np.ndarray:
        shape, dt = normalize_shape(shape), host_dtype(dtype)
        buf = EmuBuffer(math.prod(shape) * dt.itemsize, device)
        return np.asarray(buf).view(dt).reshape(shape)

    def copy_in(self, src, device) -> np.ndarray:
        """A new array on ``device`` holding the contents of ``src`` (a numpy
        array, or a cupy array that is brought to the host first)."""
        host = src if isinstance(src, np.ndarray) else src.get()
        out = self.empty(host.shape, host.dtype, device)
        np.copyto(out, host)
        return out


BACKEND = EmuBackend()
