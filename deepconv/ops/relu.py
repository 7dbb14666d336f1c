"""ReLU, forward and backward (kernels: csrc/kernels/relu.cuh)."""

from __future__ import annotations

from deepconv.ops import _validate as check


def relu(x, out=None):
    """``y = max(x, 0)`` elementwise; returns y.

    NaN inputs give NaN outputs (a diverging network shows NaN losses rather
    than silently training on zeros); -0.0 stays -0.0. ``out=x`` computes in
    place. ``x``: float32 or float64, C-contiguous, any shape; ``out``: same
    shape, dtype and device, allocated if None.
    """
    check.float_array(x, "x")
    if out is not None:
        check.output(out, "out", x, "x")
    dev, be = check.device_and_backend(x=x, out=out)
    if out is None:
        out = be.empty(x.shape, x.dtype, dev)
    else:
        check.in_place_or_disjoint(out, "out", x, "x", be)
    if x.size:
        with be.activate(dev):
            be.module.relu_fprop(
                be.pointer(x), be.pointer(out), x.size, x.dtype.name, be.stream_handle(dev)
            )
    return out


def relu_backward(y, dy, out=None):
    """``dx = dy where y > 0 else 0`` elementwise; returns dx.

    ``y`` is the forward OUTPUT ``relu(x)``, not its input, as in
    cuda-convnet: ``y > 0`` exactly where ``x > 0``, so a layer that ran
    ``relu`` in place still has what it needs. At the kink (``x == 0``) the
    gradient is 0. ``out=dy`` computes in place; ``out`` may not overlap
    ``y``.
    """
    check.float_array(y, "y")
    check.float_array(dy, "dy")
    check.like(dy, "dy", y, "y")
    if out is not None:
        check.output(out, "out", y, "y")
    dev, be = check.device_and_backend(y=y, dy=dy, out=out)
    if out is None:
        out = be.empty(y.shape, y.dtype, dev)
    else:
        check.in_place_or_disjoint(out, "out", dy, "dy", be)
        if check.overlaps(out, y, be):
            raise ValueError("out: shares memory with y; pass out=dy or a separate array")
    if y.size:
        with be.activate(dev):
            be.module.relu_bprop(
                be.pointer(y),
                be.pointer(dy),
                be.pointer(out),
                y.size,
                y.dtype.name,
                be.stream_handle(dev),
            )
    return out
