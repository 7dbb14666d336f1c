"""Devices: what they are called, which exist, and which backend serves each.

A device is ``emu:<i>`` (a virtual device of the CUDA-semantics CPU
emulator; each is its own memory domain) or ``cuda:<i>`` (a real GPU, reached
through ``deepconv._cuda`` and cupy). The number of emulated devices comes
from the environment variable ``DEEPCONV_EMU_DEVICES`` (default 8), read
each time it is needed so that a test or a launcher script can change it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from deepconv.backend import cuda as _cuda_backend
from deepconv.backend import emu as _emu_backend

DEVICE_TYPES = ("emu", "cuda")
EMU_DEVICES_ENV = "DEEPCONV_EMU_DEVICES"
DEFAULT_EMU_DEVICES = 8

_ACCEPTED_FORMS = "'emu', 'emu:<index>', 'cuda', 'cuda:<index>' or a deepconv.Device"


@dataclass(frozen=True)
class Device:
    """A device: ``type`` is "emu" or "cuda", ``index`` counts from 0.

    Build one with :func:`deepconv.device`, which also checks that it exists;
    constructing ``Device`` directly only checks the spelling.
    """

    type: str
    index: int = 0

    def __post_init__(self):
        if self.type not in DEVICE_TYPES:
            raise ValueError(f"Device.type: expected 'emu' or 'cuda', got {self.type!r}")
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"Device.index: expected an int >= 0, got {self.index!r}")

    def __str__(self) -> str:
        return f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"deepconv.device('{self}')"


def emu_device_count() -> int:
    """Number of emulated devices: ``$DEEPCONV_EMU_DEVICES``, default 8."""
    raw = os.environ.get(EMU_DEVICES_ENV, "").strip()
    if not raw:
        return DEFAULT_EMU_DEVICES
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"{EMU_DEVICES_ENV}: expected a positive integer, got {raw!r}")
    return count


def cuda_available() -> bool:
    """True when CUDA devices can be used: ``deepconv._cuda`` was built and
    imports, it sees at least one device, and cupy imports. Never raises."""
    return _cuda_backend.available()


def cuda_device_count() -> int:
    """CUDA devices usable by deepconv (0 unless :func:`cuda_available`)."""
    return _cuda_backend.device_count() if _cuda_backend.available() else 0


def _parse(spec: str, arg: str) -> Device:
    kind, sep, index_text = spec.strip().partition(":")
    if kind not in DEVICE_TYPES or (sep and not index_text.isdecimal()):
        raise ValueError(f"{arg}: expected {_ACCEPTED_FORMS}, got {spec!r}")
    return Device(kind, int(index_text) if sep else 0)


def check_exists(dev: Device, arg: str = "device") -> Device:
    """Raise ValueError unless ``dev`` is one of :func:`devices`."""
    if dev.type == "emu":
        count = emu_device_count()
        if dev.index >= count:
            raise ValueError(
                f"{arg}: '{dev}' is out of range: there are {count} emulated devices "
                f"(emu:0 to emu:{count - 1}); set {EMU_DEVICES_ENV} for more"
            )
        return dev
    if not _cuda_backend.available():
        raise ValueError(f"{arg}: '{dev}' is not available: {_cuda_backend.unavailable_reason()}")
    count = _cuda_backend.device_count()
    if dev.index >= count:
        raise ValueError(
            f"{arg}: '{dev}' is out of range: there are {count} CUDA devices "
            f"(cuda:0 to cuda:{count - 1})"
        )
    return dev


def device(spec="emu:0", *, arg: str = "device") -> Device:
    """Parse and validate a device: ``"emu:0"``, ``"cuda:1"``, ``"emu"`` (index
    0) or a :class:`Device`. Raises ValueError for an unknown spelling or a
    device that does not exist, TypeError for anything that is not a str or
    Device. ``arg`` is the argument name used in messages."""
    if isinstance(spec, Device):
        dev = spec
    elif isinstance(spec, str):
        dev = _parse(spec, arg)
    else:
        raise TypeError(f"{arg}: expected {_ACCEPTED_FORMS}, got {type(spec).__name__}")
    return check_exists(dev, arg)


def devices() -> list[Device]:
    """Every usable device: all emulated ones, then each CUDA device if
    :func:`cuda_available`."""
    found = [Device("emu", i) for i in range(emu_device_count())]
    found += [Device("cuda", i) for i in range(cuda_device_count())]
    return found


_BACKENDS = {"emu": _emu_backend.BACKEND, "cuda": _cuda_backend.BACKEND}


def backend_for(dev: Device):
    """The backend object (same small interface for every device type) that
    serves ``dev``: ``module``, ``activate``, ``stream_handle``, ``pointer``,
    ``empty``."""
    return _BACKENDS[dev.type]


def synchronize(spec="emu:0") -> None:
    """Wait until every kernel launched on the device has finished (a no-op on
    emulated devices, whose launches complete before they return)."""
    dev = device(spec, arg="device")
    backend_for(dev).synchronize(dev)
