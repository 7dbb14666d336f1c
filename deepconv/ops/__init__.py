"""Functional ops: validate every argument, allocate outputs, dispatch to the
backend of the arrays' device (``deepconv._emu`` or ``deepconv._cuda``)."""

from deepconv.ops.conv import (
    ALGORITHMS,
    conv2d,
    conv2d_dgrad,
    conv2d_output_shape,
    conv2d_variant,
    conv2d_wgrad,
    get_conv_algorithm,
    set_conv_algorithm,
)
from deepconv.ops.dropout import dropout, dropout_backward
from deepconv.ops.lrn import lrn, lrn_backward
from deepconv.ops.precision import get_conv_precision, set_conv_precision
from deepconv.ops.pool import max_pool2d, max_pool2d_backward
from deepconv.ops.relu import relu, relu_backward
from deepconv.ops.sgd import sgd_update
from deepconv.ops.softmax import softmax, softmax_cross_entropy, softmax_cross_entropy_backward
from deepconv.ops.topk import topk, topk_error

__all__ = [
    "ALGORITHMS",
    "conv2d",
    "conv2d_dgrad",
    "conv2d_output_shape",
    "conv2d_variant",
    "conv2d_wgrad",
    "get_conv_algorithm",
    "get_conv_precision",
    "dropout",
    "dropout_backward",
    "lrn",
    "lrn_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "relu", "relu_backward", "set_conv_algorithm", "set_conv_precision", "sgd_update",
    "softmax", "softmax_cross_entropy", "softmax_cross_entropy_backward",
    "topk", "topk_error"]
