"""SGD with momentum and weight decay: a stateful class holding the velocity
buffers over the functional kernel :func:`deepconv.ops.sgd_update`."""

from __future__ import annotations

import numpy as np

from deepconv.backend import backend_for, device_of, is_array, to_numpy
from deepconv.nn.layer import check_real, is_int
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

    ``params``: a layer or model (its ``named_parameters()`` and ``named_gradients()``
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

    def check_state_dict(self, state) -> None:
        """Raise ValueError / TypeError (naming the entry) unless ``state``
        would load: every key, velocity names, shapes and dtypes (those of
        the parameters), ``steps`` an int >= 0. Changes nothing."""
        if not isinstance(state, dict):
            raise TypeError(f"state: expected a dict, got {type(state).__name__}")
        missing = {"lr", "momentum", "weight_decay", "steps", "velocities"} - set(state)
        if missing:
            raise ValueError(f"state: missing keys {sorted(missing)}")
        saved = state["velocities"]
        if not isinstance(saved, dict):
            raise TypeError(f"state['velocities']: expected a dict, got {type(saved).__name__}")
        if set(saved) != set(self.names):
            raise ValueError(
                f"state['velocities']: expected the parameters {sorted(self.names)}, got {sorted(saved)}"
            )
        for name, v in zip(self.names, self.velocities):
            entry = f"state['velocities'][{name!r}]"
            value = saved[name]
            if not (is_array(value) or isinstance(value, np.ndarray)):
                raise TypeError(f"{entry}: expected an array, got {type(value).__name__}")
            if tuple(value.shape) != tuple(v.shape):
                raise ValueError(f"{entry}: expected shape {tuple(v.shape)}, got {tuple(value.shape)}")
            if value.dtype != v.dtype:  # an integer buffer would load as other numbers
                raise ValueError(f"{entry}: expected dtype {v.dtype} (the parameter's), got {value.dtype}")
        check_real(state["momentum"], "state['momentum']", low=0.0)
        check_real(state["weight_decay"], "state['weight_decay']", low=0.0)
        check_real(state["lr"], "state['lr']", low=0.0)
        steps = state["steps"]
        if not is_int(steps) or steps < 0:  # 1.5 steps is no count (it used to be truncated)
            raise ValueError(f"state['steps']: expected an int >= 0, got {steps!r}")

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output (velocities are copied into
        the existing buffers, on their devices); nothing changes unless
        :meth:`check_state_dict` accepts the whole of it."""
        self.check_state_dict(state)
        saved = state["velocities"]
        for name, v in zip(self.names, self.velocities):
            dev = device_of(v)
            be = backend_for(dev)
            host = np.ascontiguousarray(to_numpy(saved[name]) if is_array(saved[name])
                                        else np.asarray(saved[name]))
            src = be.copy_in(host, dev)
            with be.activate(dev):
                v[...] = src
        self.lr = state["lr"]
        self.momentum = float(state["momentum"])
        self.weight_decay = float(state["weight_decay"])
        self.steps = int(state["steps"])

    def __repr__(self):
        return (f"SGD(lr={self.lr!r}, momentum={self.momentum!r}, "
                f"weight_decay={self.weight_decay!r}, {len(self.params)} tensors)")


def _collect(params):
    """(names, params, grads) from a layer or a list of triples."""
    if hasattr(params, "named_parameters") and hasattr(params, "named_gradients"):
        named_w, named_g = params.named_parameters(), params.named_gradients()
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
