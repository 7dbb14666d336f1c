"""Arrays in from other frameworks through DLPack.

Out needs nothing: a deepconv array *is* a numpy array (emulated devices)
or a cupy array (CUDA), and both implement ``__dlpack__``, so
``torch.from_dlpack(arr)`` / ``cupy.from_dlpack(arr)`` share its memory.
"""

from __future__ import annotations

import numpy as np

from deepconv.backend import asarray

__all__ = ["from_dlpack"]

_CPU, _CUDA, _CUDA_HOST = 1, 2, 3  # DLPack's DLDeviceType codes


def from_dlpack(obj, device=None):
    """A deepconv array over ``obj``'s memory (no copy): anything with
    ``__dlpack__`` (a torch tensor, a cupy or numpy array, a JAX array...).

    A CPU tensor becomes a numpy array (on ``emu:0``, like any plain numpy
    array); a CUDA one a cupy array on its GPU (cupy needed). ``device``,
    when given, moves the result there (a counted copy if it is elsewhere).
    A torch tensor that requires grad must be ``.detach()``-ed first, as
    for ``torch.utils.dlpack``.
    """
    if not hasattr(obj, "__dlpack__") or not hasattr(obj, "__dlpack_device__"):
        raise TypeError(f"obj: expected an object with __dlpack__ (a tensor or an array), got "
                        f"{type(obj).__name__}")
    kind, _ = obj.__dlpack_device__()
    try:
        if kind in (_CPU, _CUDA_HOST):
            arr = np.from_dlpack(obj)
        elif kind == _CUDA:
            try:
                import cupy
            except ImportError:
                raise TypeError("obj: a CUDA tensor needs cupy to be read as a deepconv array "
                                "(pip install cupy-cuda12x)") from None
            arr = cupy.from_dlpack(obj)
        else:
            raise TypeError(f"obj: DLPack device type {kind} is neither the CPU nor CUDA")
    except (BufferError, RuntimeError) as exc:
        raise TypeError(f"obj: cannot be shared through DLPack ({exc})") from None
    return arr if device is None else asarray(arr, device=device)
