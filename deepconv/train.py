"""The training loop: :func:`fit` (epochs of forward, loss, backward, SGD
step; validation; logs, plot and checkpoints) and :func:`evaluate`.

Determinism: with the same model initialisation, optimiser, loaders and
device, two runs give bitwise identical weights: the kernels are
deterministic, the loader's order is a function of (seed, epoch), and the
dropout masks of (seed, step). A checkpoint stores every one of those
counters, so ``fit(..., resume=True)`` after an interruption ends with the
same bits as a run that never stopped.

Files written in ``out_dir``:

- ``checkpoint.safetensors``: after every epoch (see :mod:`deepconv.checkpoint`);
- ``best.safetensors``: the epoch with the lowest validation top-1 error so far;
- ``log.csv`` and ``log.jsonl``: one row per epoch (:data:`LOG_COLUMNS`);
- ``curves.png``: loss and error curves, when matplotlib is installed.

Several devices: ``fit(..., strategy=DataParallel(...))`` trains replicas in
one process, ``strategy=DistributedDataParallel(...)`` one rank of an MPI
job (only rank 0 validates, logs and writes files; ``deepconv train``
under ``mpiexec`` does this, see :mod:`deepconv.train_command`).
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import os
import sys
import time

import numpy as np

from deepconv.backend import asarray, device as _device, device_of
from deepconv.checkpoint import load_checkpoint, save_checkpoint
from deepconv.nn import Dropout, SoftmaxCrossEntropy
from deepconv.nn.loss import NonFiniteLoss, finite_loss
from deepconv.ops import topk_error

__all__ = ["LOG_COLUMNS", "ResumeError", "TrainingDiverged", "evaluate", "fit"]

CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"
LOG_CSV = "log.csv"
LOG_JSONL = "log.jsonl"
PLOT = "curves.png"
LOG_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_top1_error",
               "val_top5_error", "images_per_s", "epoch_s", "elapsed_s")


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class ResumeError(ValueError):
    """``fit(..., resume=True)``: the checkpoint cannot be resumed from (its
    message names the file and what is wrong)."""


def evaluate(model, loader, device, k=5) -> dict:
    """Mean loss, top-1 and top-``k`` error (``k`` capped at the number of
    classes) of ``model`` in evaluation mode over ``loader``'s batches.
    Errors are exact counts over the whole set divided by its size."""
    dev = _device(device)
    criterion = SoftmaxCrossEntropy()
    was_training = model.training
    model.eval()
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(0)
    total, loss_sum, miss1, missk, classes = 0, 0.0, 0, 0, None
    try:
        for x, y in loader:
            x, y = asarray(x, device=dev), asarray(y, device=dev)
            logits = model.forward(x)
            n, classes = logits.shape[0], logits.shape[1]
            scores = logits.reshape(n, classes)
            loss_sum += float(criterion.forward(scores, y)) * n
            miss1 += round(topk_error(scores, y, 1) * n)
            missk += round(topk_error(scores, y, min(k, classes)) * n)
            total += n
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("loader: the validation set is empty")
    return {"loss": loss_sum / total, "top1_error": miss1 / total,
            f"top{k}_error": missk / total, "images": total}


def fit(model, optimizer, train_loader, val_loader, epochs, device, out_dir, schedule=None,
        resume=False, log_every=20, stream=None, strategy=None) -> dict:
    """Train ``model`` for ``epochs`` epochs (in total, counting those of a
    resumed run) and return ``{"history": rows, "best": row, "final": row,
    "epochs_trained": epochs run by this call}``.

    Each step: ``forward``, :class:`~deepconv.nn.SoftmaxCrossEntropy`,
    ``backward``, ``optimizer.step()``. After each epoch: validation (loss,
    top-1 and top-5 error with :func:`deepconv.ops.topk_error`),
    ``schedule.step()`` (or ``schedule.step(val_top1_error)`` for a
    schedule whose ``step`` takes a metric, such as
    :class:`~deepconv.optim.ReduceOnPlateau`), a log row and a checkpoint.

    ``model``: its parameters already on ``device`` (move it, then build
    the optimiser). ``train_loader`` / ``val_loader``: iterables of numpy
    ``(x, y)`` batches, such as :class:`~deepconv.data.DataLoader` (whose
    epoch is set before each pass and saved in checkpoints). ``resume``:
    continue from ``out_dir/checkpoint.safetensors``. Progress goes to
    ``stream`` (default stderr): one line rewritten in place on a terminal,
    a line every ``log_every`` steps otherwise.

    ``strategy``: ``None`` (one device), or an object whose ``module`` is
    ``model`` and whose ``train_step(x, y, optimizer)`` runs one step and
    returns the global mean loss: a :class:`~deepconv.parallel.DataParallel`
    (``device`` is its first device; ``train_loader`` yields global
    batches) or a :class:`~deepconv.parallel.DistributedDataParallel`
    (``device`` is this rank's; ``train_loader`` yields this rank's shard
    of each batch, see ``DataLoader(shard=...)``). With a strategy of
    ``rank`` > 0 this call writes nothing and prints nothing: rank 0
    validates, broadcasts the validation figures (so that every rank's
    schedule steps alike), logs and writes the files. ``resume`` reads
    ``out_dir`` on every rank.

    Raises :class:`TrainingDiverged` as soon as the loss is NaN or
    infinite (the last checkpoint stays as it was).
    """
    dev = _device(device)
    epochs = _count(epochs, "epochs", 0)
    log_every = _count(log_every, "log_every", 1)
    for name, arr in model.named_parameters():
        if device_of(arr) != dev:
            raise ValueError(f"model: parameter {name!r} is on {device_of(arr)}, not on {dev}; "
                             "move the model with model.to(device) before building the optimizer")
    if strategy is not None and getattr(strategy, "module", None) is not model:
        raise ValueError("strategy: expected a strategy over model (strategy.module is model)")
    writes = getattr(strategy, "rank", 0) == 0  # only rank 0 of a multi-process job
    replicas = getattr(strategy, "replicas", [model])
    if writes:
        os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, v) for k, v in (
        ("checkpoint", CHECKPOINT), ("best", BEST), ("csv", LOG_CSV), ("jsonl", LOG_JSONL),
        ("plot", PLOT))}
    stream = sys.stderr if stream is None else stream
    progress = _Progress(stream if writes else _Discard(), log_every)

    run = {"epoch": 0, "step": 0, "best_top1_error": math.inf, "best_epoch": 0,
           "elapsed_s": 0.0}
    rows = []
    if resume:
        if not os.path.exists(paths["checkpoint"]):
            raise FileNotFoundError(f"resume: no checkpoint to resume from at {paths['checkpoint']}")
        try:
            state = load_checkpoint(paths["checkpoint"], model, optimizer, schedule)
            run.update({k: state[k] for k in run if k in state})
            for replica in replicas:
                _set_dropout_steps(replica, state.get("dropout", {}))
            if "loader" in state and hasattr(train_loader, "load_state_dict"):
                train_loader.load_state_dict(state["loader"])
        except (ValueError, TypeError, KeyError, OSError) as exc:
            raise ResumeError(f"resume: {exc}") from exc
        if strategy is not None:
            strategy.broadcast_parameters()
        rows = [r for r in _read_jsonl(paths["jsonl"]) if r.get("epoch", 0) <= run["epoch"]]
        progress.note(f"resumed from {paths['checkpoint']} at epoch {run['epoch']}, "
                      f"step {run['step']}")

    stepper = _OneDevice(model, dev) if strategy is None else strategy
    metric_step = _takes_metric(schedule)
    steps_per_epoch = _length(train_loader)
    start_epoch, started = run["epoch"], time.perf_counter()
    for epoch in range(start_epoch, epochs):
        stepper.train()
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        for i, (x, y) in enumerate(train_loader, 1):
            try:  # every step checks the (global) loss before any update
                loss = float(stepper.train_step(x, y, optimizer))
            except NonFiniteLoss as exc:
                progress.end()
                raise TrainingDiverged(
                    f"the training loss became {exc.loss} at {_position(epoch, run, i, optimizer)}"
                    f"; lower the learning rate. {_last_good(paths)}") from None
            batch = getattr(stepper, "last_batch_size", 0) or x.shape[0]
            run["step"] += 1
            seen += batch
            loss_sum += loss * batch
            now = time.perf_counter()
            done = (epoch - start_epoch) * (steps_per_epoch or i) + i
            todo = (epochs - epoch) * (steps_per_epoch or i) - i
            progress.step(epoch + 1, epochs, i, steps_per_epoch, loss, seen / (now - t0),
                          (now - started) / done * todo)
        train_time = time.perf_counter() - t0
        if seen == 0:
            raise ValueError("train_loader: an epoch yielded no batches")
        val = _validate(model, val_loader, dev, strategy, writes)
        if schedule is not None:
            schedule.step(val["top1_error"]) if metric_step else schedule.step()
        epoch_s = time.perf_counter() - t0
        run["epoch"] = epoch + 1
        run["elapsed_s"] += epoch_s
        row = {"epoch": epoch + 1, "step": run["step"], "lr": float(optimizer.lr),
               "train_loss": loss_sum / seen, "val_loss": val["loss"],
               "val_top1_error": val["top1_error"], "val_top5_error": val["top5_error"],
               "images_per_s": seen / train_time, "epoch_s": epoch_s,
               "elapsed_s": run["elapsed_s"]}
        rows.append(row)
        improved = row["val_top1_error"] < run["best_top1_error"]
        if improved:
            run["best_top1_error"], run["best_epoch"] = row["val_top1_error"], epoch + 1
        progress.epoch(row)
        if writes:
            _write_logs(rows, paths)
            state = dict(run, loader=_loader_state(train_loader), dropout=_dropout_steps(model))
            save_checkpoint(paths["checkpoint"], model, optimizer, schedule, state)
            if improved:
                save_checkpoint(paths["best"], model, optimizer, schedule, state)

    if writes:
        _plot(rows, paths["plot"], progress)
    best = next((r for r in rows if r["epoch"] == run["best_epoch"]), None)
    return {"history": rows, "best": best, "final": rows[-1] if rows else None,
            "epochs_trained": max(0, epochs - start_epoch)}


class _OneDevice:
    """The plain step on one device, in the shape of the strategies
    (:class:`~deepconv.parallel.DataParallel`...) so that ``fit`` has one
    loop: forward, loss (checked finite), backward, ``optimizer.step()``."""

    def __init__(self, model, device):
        self.module, self.device = model, device
        self.criterion = SoftmaxCrossEntropy()
        self.last_batch_size = 0

    def train(self, mode=True):
        self.module.train(mode)
        return self

    def train_step(self, x, y, optimizer) -> float:
        x, y = asarray(x, device=self.device), asarray(y, device=self.device)
        loss = finite_loss(self.criterion.forward(self.module.forward(x), y))
        self.module.backward(self.criterion.backward())
        optimizer.step()
        self.last_batch_size = x.shape[0]
        return loss


def _position(epoch, run, batch, optimizer) -> str:
    """Where a diverged run stopped, for its message."""
    return f"epoch {epoch + 1}, step {run['step'] + 1} (batch {batch}, lr {optimizer.lr:g})"


def _last_good(paths) -> str:
    return f"The last good checkpoint is {paths['checkpoint']}"


_VAL_KEYS = ("loss", "top1_error", "top5_error", "images")


def _validate(model, loader, dev, strategy, writes) -> dict:
    """:func:`evaluate` on rank 0 (or without ranks); a multi-process
    strategy then hands rank 0's figures to every rank, which waits."""
    val = evaluate(model, loader, dev) if writes else None
    share = getattr(strategy, "broadcast_floats", None)
    if share is None:
        return val
    figures = share([val[k] for k in _VAL_KEYS] if writes else None)
    return dict(zip(_VAL_KEYS, figures))


class _Discard:
    """A stream that drops what it is given (progress of ranks > 0)."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass


# --- state the checkpoint carries besides weights and optimiser -----------------------


def _leaves(model):
    return model.named_layers() if hasattr(model, "named_layers") else [("", model)]


def _dropout_steps(model) -> dict:
    return {name: layer.step for name, layer in _leaves(model) if isinstance(layer, Dropout)}


def _set_dropout_steps(model, steps: dict):
    for name, layer in _leaves(model):
        if isinstance(layer, Dropout) and name in steps:
            layer.step = int(steps[name])


def _loader_state(loader):
    return loader.state_dict() if hasattr(loader, "state_dict") else None


def _takes_metric(schedule) -> bool:
    """Whether ``schedule.step`` needs an argument (a plateau schedule)."""
    if schedule is None:
        return False
    params = inspect.signature(schedule.step).parameters.values()
    return any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               for p in params)


def _length(loader):
    try:
        return len(loader)
    except TypeError:
        return None


def _count(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


# --- logs and plot ----------------------------------------------------------------------


def _read_jsonl(path) -> list:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_logs(rows, paths):
    """Rewrite both logs whole (a resumed run drops rows past its checkpoint)."""
    with open(paths["jsonl"], "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    with open(paths["csv"], "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _plot(rows, path, progress):
    if not rows:
        return
    try:  # optional: the object API leaves pyplot's global state (and backend) alone
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        progress.note(f"matplotlib is not installed: not writing {path} (pip install matplotlib)")
        return
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, err_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [r["train_loss"] for r in rows], marker="o", label="train")
    loss_ax.plot(epochs, [r["val_loss"] for r in rows], marker="o", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    err_ax.plot(epochs, [100 * r["val_top1_error"] for r in rows], marker="o", label="top-1")
    err_ax.plot(epochs, [100 * r["val_top5_error"] for r in rows], marker="o", label="top-5")
    err_ax.set(xlabel="epoch", ylabel="error (%)", title="validation error")
    for ax in (loss_ax, err_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=100)


class _Progress:
    """Progress to a stream: a line updated in place (carriage return) on a
    terminal, plain lines every ``every`` steps otherwise."""

    def __init__(self, stream, every):
        self.stream, self.every = stream, every
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.open = False  # a carriage-return line is on screen

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()

    def step(self, epoch, epochs, i, steps, loss, ips, eta):
        of = f"/{steps}" if steps else ""
        line = (f"epoch {epoch}/{epochs} step {i}{of}  loss {loss:.4f}  {ips:,.0f} images/s  "
                f"ETA {_duration(eta)}")
        if self.tty:
            self._write("\r" + line + "\x1b[K")
            self.open = True
        elif i % self.every == 0 or i == steps:
            self._write(line + "\n")

    def end(self):
        if self.open:
            self._write("\n")
            self.open = False

    def epoch(self, row):
        self.end()
        self._write(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}, "
                    f"val loss {row['val_loss']:.4f}, top-1 error {100 * row['val_top1_error']:.2f} %, "
                    f"top-5 error {100 * row['val_top5_error']:.2f} %, lr {row['lr']:g}, "
                    f"{row['images_per_s']:,.0f} images/s, {row['epoch_s']:.1f} s\n")

    def note(self, text):
        self.end()
        self._write(text + "\n")


def _duration(seconds) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
