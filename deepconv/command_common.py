"""What the ``deepconv eval`` and ``deepconv features`` commands share:
usage errors that name their option, the ``--mean`` value, and a trained
network rebuilt from ``--model`` / ``--model-arg`` with a checkpoint's
weights."""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager

__all__ = ["UsageError", "at_least", "checkpoint_classes", "load_trained_model", "option",
           "parse_rgb", "rebuild_model"]


class UsageError(ValueError):
    """A bad command-line value: one line starting with the option's name;
    the commands print it and exit with status 2."""


@contextmanager
def option(name, also=()):
    """Report the errors raised inside (ValueError, TypeError, ImportError,
    OSError and the types in ``also``) as errors of option ``name``; a
    message that already names an option is kept as it is."""
    try:
        yield
    except UsageError:
        raise
    except (ValueError, TypeError, ImportError, OSError, *also) as exc:
        text = str(exc)
        raise UsageError(text if text.startswith("--") else f"{name}: {text}") from None


def at_least(value, name, minimum=1):
    """``value`` (an int option) if it is >= ``minimum``."""
    if value < minimum:
        raise UsageError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def parse_rgb(text, name, words):
    """A ``--mean`` value as ``(mean, std)``: one of ``words`` gives
    ``(words[text], None)``; three finite numbers ``R,G,B`` give ``([R, G,
    B], None)``; the path of the ``data.json`` that ``deepconv train``
    wrote beside its checkpoints gives its ``mean_rgb`` and ``std_rgb``
    (None where the training did not standardise)."""
    if text.lower() in words:
        return words[text.lower()], None
    if os.path.isfile(text):
        from deepconv.data.pipeline import read_data_info

        with option(name):
            info = read_data_info(text)
        std = info.get("std_rgb")
        return [float(v) for v in info["mean_rgb"]], None if std is None else [float(v) for v in std]
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        choices = ", ".join(repr(w) for w in words)
        raise UsageError(f"{name}: expected R,G,B (three numbers), a data.json written by "
                         f"deepconv train, or one of {choices}, got {text!r}")
    return values, None


def checkpoint_classes(path):
    """The number of classes a checkpoint's network was trained for: the
    length of its last parameter when that is a bias (every model in
    :mod:`deepconv.models` ends with a Linear classifier); None if unknown."""
    from deepconv.checkpoint import MODEL_PREFIX, read_header

    header, meta = read_header(path)
    try:
        names = json.loads(meta.get("parameters", "[]"))
    except json.JSONDecodeError:
        return None
    shape = header.get(MODEL_PREFIX + names[-1], {}).get("shape") if names else None
    return shape[0] if isinstance(shape, list) and len(shape) == 1 else None


def load_trained_model(name, model_args, checkpoint, crop_size, num_classes, device):
    """A fresh ``name`` network from :mod:`deepconv.models` (built as
    ``deepconv train`` builds it, for 3 x ``crop_size`` x ``crop_size``
    inputs and ``num_classes`` classes, plus the ``KEY=VALUE`` strings of
    ``model_args``) holding the weights of ``checkpoint``. Errors name
    ``--model``, ``--model-arg`` or ``--checkpoint``."""
    from deepconv.checkpoint import load_checkpoint

    if not os.path.isfile(checkpoint):
        raise UsageError(f"--checkpoint: no such file: {checkpoint}")
    model = rebuild_model(name, model_args, crop_size, num_classes, device)
    try:
        load_checkpoint(checkpoint, model)
    except (ValueError, OSError) as exc:
        hint = ""
        if _is_checkpoint(checkpoint):  # a sound file, so it is the network that differs
            hint = (f" (was it saved from --model {name} with these --model-arg values, "
                    f"{num_classes} classes and --crop-size {crop_size}?)")
        raise UsageError(f"--checkpoint: {exc}{hint}") from None
    return model


def rebuild_model(name, model_args, crop_size, num_classes, device):
    """A fresh ``name`` network as ``deepconv train`` builds it, for 3 x
    ``crop_size`` x ``crop_size`` inputs (the network's input is a crop,
    whatever the size of the images); errors name ``--model`` or
    ``--model-arg``."""
    from deepconv.train_command import build_model, model_arguments

    with option("--model-arg"):
        kwargs = model_arguments(model_args)
    with option(f"--model {name} / --model-arg"):
        return build_model(name, kwargs, (3, crop_size, crop_size), num_classes, 0, device,
                           data_name=f"{crop_size}x{crop_size} crops")


def _is_checkpoint(path) -> bool:
    from deepconv.checkpoint import FORMAT, read_metadata

    try:
        return read_metadata(path).get("format") == FORMAT
    except (OSError, ValueError):
        return False
