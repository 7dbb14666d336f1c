"""Functional ops: validate every argument, allocate outputs, dispatch to the
backend of the arrays' device (``deepconv._emu`` or ``deepconv._cuda``)."""

from deepconv.ops.relu import relu, relu_backward
from deepconv.ops.sgd import sgd_update

__all__ = ["relu", "relu_backward", "sgd_update"]
