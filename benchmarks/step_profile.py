"""Where one training step's time goes: milliseconds per kernel call, by
layer and pass, for ``benchmarks/train_step.py --profile``.

Every call into the backend's extension module (``conv2d_fprop``,
``max_pool2d_bprop``, ``sgd_update``, ...) is timed with a device
synchronisation after it, and charged to the layer whose forward or
backward made it (the loss and the optimizer count as layers too). What is
left of the step's wall time is Python: validation, buffers, the layer
graph. The synchronisations make a profiled step a little slower than a
timed one on a GPU; the emulator runs every launch to completion anyway.
"""

from __future__ import annotations

import collections
import statistics
import time

import deepconv
from deepconv.backend import backend_for

PYTHON = "(python: validation, buffers, layer graph)"
SHOWN_ROWS = 30  # the largest rows; the rest are summed in one line


class _TimedModule:
    """The extension module, with every call timed and recorded under the
    current owner; conv calls are labelled with the variant they run."""

    def __init__(self, module, device, records):
        self._module = module
        self._device = device
        self._records = records
        self.owner = "?"

    def __getattr__(self, name):
        target = getattr(self._module, name)
        if not callable(target) or name.endswith(("_variant", "_workspace_bytes")):
            return target

        def timed(*args, **kwargs):
            start = time.perf_counter()
            result = target(*args, **kwargs)
            deepconv.synchronize(self._device)
            elapsed = time.perf_counter() - start
            self._records.append((self.owner, self._label(name, args, kwargs), elapsed))
            return result

        return timed

    def _label(self, name, args, kwargs):
        if name in ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad"):
            # deepconv.ops passes (params, pointers..., dtype, stream, algorithm)
            strings = [a for a in args if isinstance(a, str)]
            dtype = strings[0] if strings else "float32"
            algorithm = kwargs.get("algorithm", strings[1] if len(strings) > 1 else "auto")
            variant = getattr(self._module, name + "_variant")(args[0], dtype, algorithm)
            return f"{name} [{variant}]"
        return name


def _owned(owner_name, fn, timed_module):
    def call(*args, **kwargs):
        timed_module.owner = owner_name
        return fn(*args, **kwargs)
    return call


def profile_step(model, criterion, optimizer, step, device, repeat):
    """Median milliseconds per (owner, kernel) over ``repeat`` profiled
    steps, and the median step; ``step`` must call model / criterion /
    optimizer through their ``forward`` / ``backward`` / ``step`` methods."""
    backend = backend_for(device)
    records = []
    timed = _TimedModule(backend.module, device, records)
    patched = []  # (object, attribute, original)
    for name, layer in model.named_layers():
        for method in ("forward", "backward"):
            original = getattr(layer, method)
            patched.append((layer, method, original))
            setattr(layer, method, _owned(f"{name}.{method}", original, timed))
    for obj, method, owner in ((criterion, "forward", "loss.forward"),
                               (criterion, "backward", "loss.backward"),
                               (optimizer, "step", "optimizer.step")):
        original = getattr(obj, method)
        patched.append((obj, method, original))
        setattr(obj, method, _owned(owner, original, timed))
    backend_class = type(backend)
    module_attribute = backend_class.__dict__["module"]
    backend_class.module = timed
    try:
        step()  # warm-up: buffers, workspaces
        per_step, totals = collections.defaultdict(list), []
        for _ in range(repeat):
            records.clear()
            start = time.perf_counter()
            step()
            totals.append(time.perf_counter() - start)
            sums = collections.defaultdict(float)
            for owner, label, elapsed in records:
                sums[(owner, label)] += elapsed
            sums[("", PYTHON)] = totals[-1] - sum(e for _, _, e in records)
            for key, value in sums.items():
                per_step[key].append(value)
    finally:
        backend_class.module = module_attribute
        for obj, method, _ in patched:
            delattr(obj, method)  # the instance attribute hid the class's method
    rows = {key: 1e3 * statistics.median(values) for key, values in per_step.items()}
    return rows, 1e3 * statistics.median(totals)


def print_profile(name, rows, total_ms, torch_ms=None):
    """The table, largest first, then the sums per kind of kernel."""
    print(f"\n{name}: one profiled step {total_ms:.1f} ms (median)"
          + (f"; PyTorch's whole step {torch_ms:.1f} ms" if torch_ms else ""))
    ranked = sorted(rows.items(), key=lambda item: -item[1])
    for (owner, label), ms in ranked[:SHOWN_ROWS]:
        print(f"  {ms:8.2f} ms  {owner:22} {label}")
    if len(ranked) > SHOWN_ROWS:
        rest = ranked[SHOWN_ROWS:]
        print(f"  {sum(ms for _, ms in rest):8.2f} ms  ({len(rest)} smaller rows)")
    kinds = collections.defaultdict(float)
    for (_, label), ms in rows.items():
        kinds[label.split(" [")[0]] += ms
    print("  by kernel: " + ", ".join(f"{kind} {ms:.1f}" for kind, ms in
                                       sorted(kinds.items(), key=lambda item: -item[1])))
