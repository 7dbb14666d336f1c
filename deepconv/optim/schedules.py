"""Learning-rate schedules: they set ``optimizer.lr`` (per-parameter
multipliers stay as they are)."""

from __future__ import annotations

import math

from deepconv.nn.layer import check_int, check_real

__all__ = ["StepLR", "ReduceOnPlateau"]


def _optimizer(optimizer):
    if not hasattr(optimizer, "lr"):
        raise TypeError(f"optimizer: expected an object with an lr, got {type(optimizer).__name__}")
    return optimizer


def _check_keys(state, keys):
    if not isinstance(state, dict):
        raise TypeError(f"state: expected a dict, got {type(state).__name__}")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"state: missing keys {missing}")


class StepLR:
    """``lr = base_lr * gamma ** (epoch // step_size)``: call ``step()`` once
    per epoch (``base_lr`` is the optimiser's lr when the schedule is made)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.optimizer = _optimizer(optimizer)
        self.step_size = check_int(step_size, "step_size")
        self.gamma = check_real(gamma, "gamma", low=0.0)
        self.base_lr = float(optimizer.lr)
        self.epoch = 0

    def step(self):
        """End of an epoch: advance and set the optimiser's lr."""
        self.epoch += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.epoch // self.step_size)
        return self.optimizer.lr

    def state_dict(self):
        return {"base_lr": self.base_lr, "epoch": self.epoch}

    def check_state_dict(self, state) -> None:
        """Raise ValueError / TypeError naming the entry unless ``state`` loads."""
        _check_keys(state, ("base_lr", "epoch"))
        check_real(state["base_lr"], "state['base_lr']", low=0.0)
        check_int(state["epoch"], "state['epoch']", minimum=0)

    def load_state_dict(self, state):
        self.check_state_dict(state)
        self.base_lr = float(state["base_lr"])
        self.epoch = int(state["epoch"])


class ReduceOnPlateau:
    """Multiply the lr by ``factor`` when a validation metric has stopped
    improving for more than ``patience`` epochs (AlexNet: "divide the
    learning rate by 10 when the validation error rate stopped improving";
    VGG the same, on validation accuracy).

    ``mode="min"`` for errors and losses, ``"max"`` for accuracies. A value
    improves on the best so far when it beats it by more than ``threshold``
    (absolute). After a reduction the count of bad epochs restarts; the lr
    never goes below ``min_lr``. Call ``step(metric)`` once per evaluation.
    """

    def __init__(self, optimizer, *, factor=0.1, patience, mode="min", threshold=0.0, min_lr=0.0):
        self.optimizer = _optimizer(optimizer)
        self.factor = check_real(factor, "factor", low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = check_int(patience, "patience", minimum=0)
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        self.mode = mode
        self.threshold = check_real(threshold, "threshold", low=0.0)
        self.min_lr = check_real(min_lr, "min_lr", low=0.0)
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.reductions = 0

    def _improves(self, value):
        if self.mode == "min":
            return value < self.best - self.threshold
        return value > self.best + self.threshold

    def step(self, metric):
        """Record one validation result; returns the (possibly reduced) lr."""
        value = check_real(metric, "metric")
        if self._improves(value):
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
                self.bad_epochs = 0
                self.reductions += 1
        return self.optimizer.lr

    def state_dict(self):
        return {"best": self.best, "bad_epochs": self.bad_epochs, "reductions": self.reductions}

    def check_state_dict(self, state) -> None:
        """Raise ValueError / TypeError naming the entry unless ``state`` loads."""
        _check_keys(state, ("best", "bad_epochs", "reductions"))
        best = state["best"]
        if isinstance(best, bool) or not isinstance(best, (int, float)) or math.isnan(best):
            raise ValueError(f"state['best']: expected a number (inf allowed), got {best!r}")
        check_int(state["bad_epochs"], "state['bad_epochs']", minimum=0)
        check_int(state["reductions"], "state['reductions']", minimum=0)

    def load_state_dict(self, state):
        self.check_state_dict(state)
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.reductions = int(state["reductions"])
