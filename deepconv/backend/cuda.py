"""The CUDA backend: kernels from ``deepconv._cuda`` on cupy arrays.

Nothing here touches the CUDA driver at import time. ``deepconv._cuda`` and
cupy are imported on first use, and the probe that decides whether CUDA is
usable (:func:`available`) catches every error, so a machine without a GPU,
a driver, cupy or the compiled module simply reports CUDA as unavailable.
"""

from __future__ import annotations

import importlib
import sys
import threading

_probe_lock = threading.Lock()
_probe = None  # dict filled once by _run_probe()


def _run_probe() -> dict:
    """Import ``_cuda`` and cupy and count devices, once; never raises."""
    global _probe
    with _probe_lock:
        if _probe is not None:
            return _probe
        result = {"module": None, "cupy": None, "device_count": 0, "reason": "", "import_error": ""}
        try:
            result["module"] = importlib.import_module("deepconv._cuda")
        except Exception as exc:  # not built, or a broken shared library
            result["import_error"] = f"{type(exc).__name__}: {exc}"
            result["reason"] = f"deepconv._cuda is not available ({result['import_error']})"
        if result["module"] is not None:
            result["device_count"] = _safe_call(result["module"].device_count, 0)
            if result["device_count"] <= 0:
                status = _safe_call(result["module"].device_status, "unknown CUDA status")
                result["reason"] = f"no CUDA device found: {status}"
        if result["module"] is not None and not result["reason"]:
            try:
                result["cupy"] = importlib.import_module("cupy")
            except Exception as exc:
                result["reason"] = f"cupy is not installed or failed to import ({exc})"
        _probe = result
        return result


def _safe_call(fn, default):
    try:
        return fn()
    except Exception:
        return default


def available() -> bool:
    """``_cuda`` imports, sees at least one device, and cupy imports."""
    try:
        return not _run_probe()["reason"]
    except Exception:
        return False


def unavailable_reason() -> str:
    """Why :func:`available` is False ("" when it is True)."""
    return _run_probe()["reason"]


def device_count() -> int:
    """Devices that ``deepconv._cuda`` sees (0 if it is not importable)."""
    return _run_probe()["device_count"]


def module_or_none():
    """``deepconv._cuda`` if it imports, else None (see :func:`import_error`)."""
    return _run_probe()["module"]


def import_error() -> str:
    """The error that importing ``deepconv._cuda`` raised ("" if it imported)."""
    return _run_probe()["import_error"]


def is_cupy_array(obj) -> bool:
    """True for a cupy.ndarray; never imports cupy (no cupy, no cupy arrays)."""
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(obj, cupy.ndarray)


def _require():
    probe = _run_probe()
    if probe["reason"]:
        raise RuntimeError(f"CUDA is not available: {probe['reason']}")
    return probe["module"], probe["cupy"]


class CudaBackend:
    """Backend interface (shared with ``EmuBackend``) for CUDA devices."""

    type = "cuda"

    @property
    def module(self):
        return _require()[0]

    def activate(self, device):
        """Make ``device`` current for the launches inside the ``with``."""
        return _require()[1].cuda.Device(device.index)

    def stream_handle(self, device) -> int:
        cupy = _require()[1]
        with cupy.cuda.Device(device.index):
            return cupy.cuda.get_current_stream().ptr

    def pointer(self, arr) -> int:
        return arr.data.ptr

    def synchronize(self, device) -> None:
        """Wait for all work queued on ``device`` (for timing and host reads)."""
        with _require()[1].cuda.Device(device.index) as current:
            current.synchronize()

    def empty(self, shape, dtype, device):
        cupy = _require()[1]
        with cupy.cuda.Device(device.index):
            return cupy.empty(shape, dtype=dtype)

    def copy_in(self, src, device):
        """A new array on ``device`` holding the contents of ``src`` (a numpy
        array, or a cupy array on any device)."""
        cupy = _require()[1]
        if not is_cupy_array(src):
            with cupy.cuda.Device(device.index):
                return cupy.array(src, order="C")
        with src.device:
            src = cupy.ascontiguousarray(src)
        with cupy.cuda.Device(device.index):
            out = cupy.empty(src.shape, dtype=src.dtype)
            if src.nbytes:
                out.data.copy_from_device(src.data, src.nbytes)  # peer copy when allowed
        return out


BACKEND = CudaBackend()
