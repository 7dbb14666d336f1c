"""Devices, arrays and the per-device-type backends (see ``device.py``,
``arrays.py``, ``emu.py``, ``cuda.py``)."""

from deepconv.backend.arrays import (
    asarray,
    check_same_device,
    device_of,
    empty,
    is_array,
    reset_transfer_stats,
    to_device,
    to_numpy,
    transfer_stats,
    zeros,
)
from deepconv.backend.device import (
    Device,
    backend_for,
    cuda_available,
    device,
    devices,
    emu_device_count,
    synchronize,
)

__all__ = [
    "Device",
    "asarray",
    "backend_for",
    "check_same_device",
    "cuda_available",
    "device",
    "device_of",
    "devices",
    "emu_device_count",
    "empty",
    "is_array",
    "reset_transfer_stats",
    "synchronize",
    "to_device",
    "to_numpy",
    "transfer_stats",
    "zeros",
]
