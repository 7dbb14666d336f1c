"""deepconv: CUDA convnets (AlexNet / VGG class) with a CPU emulator.

Importing deepconv never needs a GPU: the emulator backend (``deepconv._emu``)
is always there, and the CUDA backend (``deepconv._cuda`` + cupy) is probed
lazily and only reported unavailable when it cannot be used.
"""

__version__ = "0.1.0"

from deepconv.backend import (
    Device,
    asarray,
    check_same_device,
    cuda_available,
    device,
    device_of,
    devices,
    empty,
    reset_transfer_stats,
    synchronize,
    to_device,
    to_numpy,
    transfer_stats,
    zeros,
)
from deepconv.backend.emu import (
    AsyncCopyError,
    BarrierDivergenceError,
    EmulatorError,
    LaunchConfigError,
    MisalignedAccessError,
)
from deepconv import models, nn, ops, optim
from deepconv.interop.dlpack import from_dlpack
from deepconv.ops.conv import get_conv_algorithm, set_conv_algorithm
from deepconv.ops.precision import get_conv_precision, set_conv_precision

__all__ = [
    "AsyncCopyError",
    "BarrierDivergenceError",
    "Device",
    "EmulatorError",
    "LaunchConfigError",
    "MisalignedAccessError",
    "__version__",
    "asarray",
    "check_same_device",
    "get_conv_precision",
    "cuda_available",
    "device",
    "device_of",
    "devices",
    "empty",
    "from_dlpack",
    "get_conv_algorithm",
    "models",
    "nn",
    "ops",
    "optim",
    "reset_transfer_stats",
    "set_conv_algorithm",
    "set_conv_precision",
    "synchronize",
    "to_device",
    "to_numpy",
    "transfer_stats",
    "zeros",
]
