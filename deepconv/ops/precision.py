"""The float32 convolutions' math: ``deepconv.set_conv_precision("fp32" | "tf32")``.

Like PyTorch's ``torch.backends.cudnn.allow_tf32``, one process-wide switch
for :func:`deepconv.ops.conv2d`, ``conv2d_dgrad`` and ``conv2d_wgrad`` on
float32 arrays (float64 is never affected):

``"fp32"`` (the default)
    FMAs in float32: results agree with a float64 computation to float32
    rounding, bitwise the same on every run.
``"tf32"``
    Tensor cores (``mma.sync`` m16n8k8 TF32, sm_80 and newer): both operands
    are rounded to TF32 (10 mantissa bits, round to nearest, ties away) and
    summed in float32, so a result carries a relative error of about
    ``2**-11`` per term. Several times the FP32 throughput on A100 / H100.
    On an older GPU the fp32 kernels run. The emulator runs the same TF32
    kernels, instruction by instruction (csrc/emu/warp_matrix.cpp); still
    deterministic.

Why fp32 by default, when PyTorch's cuDNN default allows TF32: deepconv's
contract is results that match a float64 reference to float32 rounding (its
numeric gradient checks and PyTorch parity tests depend on it), and TF32's
error, growing with the reduction length (C*R*S, up to 4608 in VGG), would
silently break that for anyone who did not ask. PyTorch itself keeps TF32
off by default for matmuls for the same reason; TF32 is one call away.
"""

from __future__ import annotations

from deepconv.backend import cuda as _cuda
from deepconv.backend import emu as _emu_backend

PRECISIONS = ("fp32", "tf32")

__all__ = ["PRECISIONS", "get_conv_precision", "set_conv_precision"]


def _modules():
    """Every compiled backend module that exists in this process."""
    mods = [_emu_backend._emu]
    cuda_module = _cuda.module_or_none()
    if cuda_module is not None:
        mods.append(cuda_module)
    return mods


def set_conv_precision(precision: str) -> str:
    """Use ``precision`` (``"fp32"`` or ``"tf32"``) for float32 convolutions
    from now on. Returns the previous setting, so a caller can restore it
    (as ``set_conv_algorithm`` does)."""
    if not isinstance(precision, str):
        raise TypeError(f"precision: expected a str ('fp32' or 'tf32'), got {type(precision).__name__}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected 'fp32' or 'tf32', got {precision!r}")
    previous = get_conv_precision()
    for module in _modules():
        module.set_conv_precision(precision)
    return previous


def get_conv_precision() -> str:
    """The precision float32 convolutions use now: ``"fp32"`` or ``"tf32"``."""
    return _emu_backend._emu.conv_precision()
