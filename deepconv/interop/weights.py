"""One entry point for weight files: :func:`load_weights` picks the reader
by the file's suffix (what ``deepconv eval --weights`` uses)."""

from __future__ import annotations

import os

from deepconv.interop.caffe import load_caffe
from deepconv.interop.torchvision import guess_torchvision_arch, load_torchvision

__all__ = ["WEIGHT_SUFFIXES", "load_weights"]

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".caffemodel")


def load_weights(model, path, rgb=True):
    """Load the weights in ``path`` into ``model`` (in place); returns
    ``model``. By suffix:

    - ``.safetensors``: a deepconv checkpoint (its model part), or a state
      dict saved with ``safetensors`` under deepconv's names or
      torchvision's (VGG 11/13/16/19, AlexNet);
    - ``.pth`` / ``.pt``: a torchvision state dict saved with
      ``torch.save`` (read with ``torch.load(weights_only=True)``: torch
      must be installed; nothing in the file is executed);
    - ``.caffemodel``: Caffe weights by layer name (``rgb``: see
      :func:`deepconv.interop.load_caffe`).

    Errors (ValueError / TypeError) name the file and what does not fit;
    the model is unchanged unless everything fits.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"{path}: unknown weight file type {suffix or '(no suffix)'!r}; "
                         f"expected one of {', '.join(WEIGHT_SUFFIXES)}")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if suffix == ".caffemodel":
        return load_caffe(model, path, rgb=rgb)
    if suffix == ".safetensors":
        from deepconv.checkpoint import FORMAT, load_checkpoint, load_file

        tensors, meta = load_file(path)
        if meta.get("format") == FORMAT:
            load_checkpoint(path, model)
            return model
    else:
        tensors = _torch_state_dict(path)
    try:
        return load_state(model, tensors)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{path}: {exc}") from None


def load_state(model, tensors):
    """``tensors`` (a dict) under the model's own names, or torchvision's."""
    own = {name for name, _ in model.named_parameters()}
    if set(tensors) == own or not any(k.startswith(("features.", "classifier.")) for k in tensors):
        model.load_state_dict(tensors)
        return model
    return load_torchvision(model, tensors, guess_torchvision_arch(tensors))


def _torch_state_dict(path) -> dict:
    try:
        import torch
    except ImportError:
        raise ValueError(f"{path}: reading a .pth / .pt file needs torch (pip install torch); or "
                         "save the state dict with safetensors") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad or unsafe file
        raise ValueError(f"{path}: torch.load could not read it as weights ({exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint wrapping the weights
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state
