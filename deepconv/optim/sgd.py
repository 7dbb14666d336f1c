"""SGD with momentum and weight decay: a stateful class holding the velocity
buffers over the functional kernel :func:`deepconv.ops.sgd_update`."""

from __future__ import annotations

import numpy as np

from deepconv.backend import backend_for, device_of, is_array, to_numpy
from deepconv.nn.layer import check_real
from deepconv.ops import sgd_update

__all__ = ["SGD"]


class SGD:
    """Stochastic gradient descent as in Krizhevsky et al. (2012), per
    parameter tensor w with gradient g (the gradient of the mean loss)::

        v <- momentum * v - weight_decay * lr * w - lr * g
        w <- w + v

    with ``lr`` and ``weight_decay`` multiplied per tensor by ``lr_mult``
    and ``decay_mult`` (Caffe's per-parameter multipliers: e.g.
    ``decay_mult={"bias": 0}`` takes biases out of the weight decay).
    Velocities start at zero.

    ``params``: a layer or model (its ``parameters()`` and ``gradients()``
    pair up by name), or a list of ``(name, param, grad)`` triples. Build
    the optimiser after moving the model to its device. ``lr_mult`` /
    ``decay_mult``: a dict whose keys are full parameter names or name
    suffixes after a dot (``"bias"`` matches ``"conv1.bias"``; the longest
    match wins), or a callable ``name -> multiplier``; default 1.

    ``step()`` applies one update (one kernel launch per device and dtype);
    schedules change ``lr``. ``state_dict()`` / ``load_state_dict()`` save
    and restore the hyperparameters, step count and velocities.
    """

    def __init__(self, params, lr, momentum=0.9, weight_decay=5e-4, *, lr_mult=None,
                 decay_mult=None):
        self.names, self.params, self.grads = _collect(params)
        self.lr = lr
        self.momentum = check_real(momentum, "momentum", low=0.0)
        self.weight_decay = check_real(weight_decay, "weight_decay", low=0.0)
        self.lr_mult = [_multiplier(lr_mult, n, "lr_mult") for n in self.names]
        self.decay_mult = [_multiplier(decay_mult, n, "decay_mult") for n in self.names]
        self.velocities = []
        for w in self.params:
            dev = device_of(w)
            be = backend_for(dev)
            v = be.empty(w.shape, w.dtype, dev)
            with be.activate(dev):
                v.fill(0)
            self.velocities.append(v)
        self.steps = 0

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_real(value, "lr", low=0.0)

    def step(self):
        """One update of every parameter, in place."""
        by_device = {}
        for i, w in enumerate(self.params):
            by_device.setdefault(device_of(w), []).append(i)
        for idx in by_device.values():
            sgd_update(
                [self.params[i] for i in idx],
                [self.grads[i] for i in idx],
                [self.velocities[i] for i in idx],
                lr=[self.lr * self.lr_mult[i] for i in idx],
                momentum=self.momentum,
                weight_decay=[self.weight_decay * self.decay_mult[i] for i in idx],
            )
        self.steps += 1

    def state_dict(self) -> dict:
        """Plain numbers and host (numpy) copies of the velocities, by name."""
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "steps": self.steps,
            "velocities": {n: np.array(to_numpy(v)) for n, v in zip(self.names, self.velocities)},
        }

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output (velocities are copied into
        the existing buffers, on their devices)."""
        if not isinstance(state, dict):
            raise TypeError(f"state: expected a dict, got {type(state).__name__}")
        missing = {"lr", "momentum", "weight_decay", "steps", "velocities"} - set(state)
        if missing:
            raise ValueError(f"state: missing keys {sorted(missing)}")
        saved = state["velocities"]
        if set(saved) != set(self.names):
            raise ValueError(
                f"state['velocities']: expected the parameters {sorted(self.names)}, got {sorted(saved)}"
            )
        for name, v in zip(self.names, self.velocities):
            if tuple(np.shape(saved[name])) != tuple(v.shape):
                raise ValueError(
                    f"state['velocities'][{name!r}]: expected shape {tuple(v.shape)}, "
                    f"got {tuple(np.shape(saved[name]))}"
                )
        momentum = check_real(state["momentum"], "state['momentum']", low=0.0)
        weight_decay = check_real(state["weight_decay"], "state['weight_decay']", low=0.0)
        lr = check_real(state["lr"], "state['lr']", low=0.0)
        for name, v in zip(self.names, self.velocities):
            dev = device_of(v)
            be = backend_for(dev)
            host = np.ascontiguousarray(to_numpy(saved[name]) if is_array(saved[name])
                                        else np.asarray(saved[name]), dtype=v.dtype)
            src = be.copy_in(host, dev)
            with be.activate(dev):
                v[...] = src
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.steps = int(state["steps"])

    def __repr__(self):
        return (f"SGD(lr={self.lr!r}, momentum={self.momentum!r}, "
                f"weight_decay={self.weight_decay!r}, {len(self.params)} tensors)")


def _collect(params):
    """(names, params, grads) from a layer or a list of triples."""
    if hasattr(params, "parameters") and hasattr(params, "gradients"):
        named_w, named_g = params.parameters(), params.gradients()
        names = [n for n, _ in named_w]
        return names, [w for _, w in named_w], [g for _, g in named_g]
    if not isinstance(params, (list, tuple)):
        raise TypeError(
            f"params: expected a layer / model or a list of (name, param, grad), got {type(params).__name__}"
        )
    names, ws, gs = [], [], []
    for i, item in enumerate(params):
        if not (isinstance(item, tuple) and len(item) == 3 and isinstance(item[0], str)):
            raise TypeError(f"params[{i}]: expected a (name, param, grad) triple")
        name, w, g = item
        if not is_array(w) or not is_array(g):
            raise TypeError(f"params[{i}]: param and grad must be arrays")
        if name in names:
            raise ValueError(f"params[{i}]: duplicate name {name!r}")
        names.append(name)
        ws.append(w)
        gs.append(g)
    return names, ws, gs


def _multiplier(spec, name, what) -> float:
    if spec is None:
        return 1.0
    if callable(spec):
        return check_real(spec(name), f"{what}({name!r})", low=0.0)
    if not isinstance(spec, dict):
        raise TypeError(f"{what}: expected a dict or a callable, got {type(spec).__name__}")
    best = None
    for key in spec:
        if key == name or name.endswith("." + key):
            if best is None or len(key) > len(best):
                best = key
    return 1.0 if best is None else check_real(spec[best], f"{what}[{best!r}]", low=0.0)
