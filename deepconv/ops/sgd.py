"""SGD with momentum and weight decay (kernels: csrc/kernels/sgd.cuh)."""

from __future__ import annotations

import bisect

from deepconv.ops import _validate as check


def sgd_update(params, grads, velocities, lr, momentum=0.9, weight_decay=5e-4):
    """One SGD step over many parameter tensors, in place.

    For every tensor, elementwise (the rule of Krizhevsky et al., 2012)::

        v <- momentum * v - weight_decay * lr * w - lr * g
        w <- w + v

    ``params`` (w), ``grads`` (g) and ``velocities`` (v) are lists of equal
    length; ``grads[i]`` and ``velocities[i]`` match ``params[i]`` in shape
    and dtype, and all live on one device. ``lr``, ``momentum`` and
    ``weight_decay`` are each a finite float >= 0, or a list with one value
    per tensor (e.g. no weight decay on biases). Params and velocities are
    updated in place and must not share memory with each other or with any
    gradient. Zero-size tensors are allowed and skipped. Tensors are
    updated with one module call per dtype (the module launches one kernel per
    up to 64 tensors).
    """
    params = check.array_list(params, "params")
    grads = check.array_list(grads, "grads")
    velocities = check.array_list(velocities, "velocities")
    for name, seq in (("grads", grads), ("velocities", velocities)):
        if len(seq) != len(params):
            raise ValueError(
                f"{name}: expected one array per parameter ({len(params)}), got {len(seq)}"
            )
    lrs = check.hyperparameter(lr, "lr", len(params))
    momenta = check.hyperparameter(momentum, "momentum", len(params))
    decays = check.hyperparameter(weight_decay, "weight_decay", len(params))
    if not params:
        return

    named = {}
    for i, (w, g, v) in enumerate(zip(params, grads, velocities)):
        check.writeable(check.float_array(w, f"params[{i}]"), f"params[{i}]")
        check.like(check.float_array(g, f"grads[{i}]"), f"grads[{i}]", w, f"params[{i}]")
        check.like(check.float_array(v, f"velocities[{i}]"), f"velocities[{i}]", w, f"params[{i}]")
        check.writeable(v, f"velocities[{i}]")
        named.update({f"params[{i}]": w, f"grads[{i}]": g, f"velocities[{i}]": v})
    dev, be = check.device_and_backend(**named)
    _check_no_aliasing(params, grads, velocities, be)

    groups = {}  # dtype name -> indices, in list order
    for i, w in enumerate(params):
        if w.size:
            groups.setdefault(w.dtype.name, []).append(i)
    with be.activate(dev):
        stream = be.stream_handle(dev)
        for dtype, idx in groups.items():
            be.module.sgd_update(
                [be.pointer(params[i]) for i in idx],
                [be.pointer(velocities[i]) for i in idx],
                [be.pointer(grads[i]) for i in idx],
                [params[i].size for i in idx],
                [lrs[i] for i in idx],
                [momenta[i] for i in idx],
                [decays[i] for i in idx],
                dtype,
                stream,
            )


def _check_no_aliasing(params, grads, velocities, be):
    """Written arrays (params, velocities) must be disjoint from every other
    argument; gradients, only read, may share memory among themselves.

    Sorted spans and a binary search per gradient, not a test of every pair:
    vgg_small's 2 x 22 written arrays against 22 gradients cost ~1000
    overlap tests, 6 ms of a ~100 ms training step on the emulator."""
    written = [(f"params[{i}]", w) for i, w in enumerate(params)]
    written += [(f"velocities[{i}]", v) for i, v in enumerate(velocities)]
    check.disjoint(written, be)
    # Disjoint and sorted by start, so their ends are sorted too: the last
    # span starting before a gradient ends reaches furthest into it.
    spans = sorted((check.span(a, be), name) for name, a in written if a.nbytes)
    starts = [start for (start, _), _ in spans]
    for i, g in enumerate(grads):
        if not g.nbytes:
            continue
        g_start, g_end = check.span(g, be)
        k = bisect.bisect_left(starts, g_end) - 1
        if k >= 0 and spans[k][0][1] > g_start:
            raise ValueError(
                f"grads[{i}] and {spans[k][1]} share memory: gradients must be separate "
                "from the parameters and velocities that the update writes"
            )
