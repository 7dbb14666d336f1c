"""Training and validation sets from a folder of images, preprocessed as
AlexNet and VGG did (see :mod:`deepconv.data.transforms`):

- training: the smaller side rescaled to S (or, with scale jittering, to an
  S drawn from [Smin, Smax] per image), a random ``crop_size`` crop, a
  random horizontal flip, optionally AlexNet's PCA colour augmentation,
  then the training set's mean RGB subtracted (and, with ``standardize``,
  each channel divided by its standard deviation);
- validation: rescaled to S (Smin and Smax jittered: their midpoint, VGG's
  single-scale Q), the centre crop, the same normalisation.

The mean RGB (and standard deviation) and the colour PCA are estimated on a fixed, evenly spaced
sample of training images (centre crops at the validation scale), so they
are the same on every run. What a checkpoint needs besides its weights to
be evaluated the same way (class names, mean, std, crop, scales) is
:attr:`FolderSets.info`, which ``deepconv train`` writes to
``OUT/data.json`` and ``deepconv eval`` / ``deepconv features`` read back
(``--mean OUT/data.json``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from deepconv.data.folder import ImageFolder
from deepconv.data.transforms import (
    CenterCrop,
    Compose,
    PCAColor,
    RandomCrop,
    RandomHorizontalFlip,
    Rescale,
    ScaleJitter,
    SubtractMean,
    fit_pca_color,
    mean_rgb,
    std_rgb,
)
from deepconv.nn.layer import check_int

__all__ = ["DATA_INFO", "FolderSets", "folder_sets", "read_data_info", "write_data_info"]

DATA_INFO = "data.json"
STATISTICS_SAMPLE = 256  # training images the mean and the colour PCA are estimated on


@dataclass
class FolderSets:
    """``train`` and ``val`` :class:`~deepconv.data.ImageFolder` sets with
    their transforms, and ``info``: ``{"classes", "mean_rgb", "std_rgb"
    (None unless standardised), "crop_size", "scale" ([S] or [Smin, Smax]),
    "val_scale", "pca_color"}``."""

    train: ImageFolder
    val: ImageFolder
    info: dict

    @property
    def image_shape(self) -> tuple:
        """(C, H, W) of the images the network sees."""
        return (3, self.info["crop_size"], self.info["crop_size"])


def folder_sets(root, crop_size=224, scale=(256,), *, pca_color=False, standardize=False,
                seed=0, on_error="raise") -> FolderSets:
    """The sets of ``root``/train and ``root``/val (each one sub-folder per
    class; val's classes indexed as train's). ``scale``: ``(S,)`` or
    ``(Smin, Smax)`` (VGG's jittering), each >= ``crop_size``. ``seed``
    fixes the augmentation draws (with the epoch and the image index).
    ``on_error``: what to do with an unreadable image (ImageFolder's).
    ``standardize``: also divide by the per-channel standard deviation."""
    crop_size = check_int(crop_size, "crop_size")
    scale = tuple(scale) if isinstance(scale, (tuple, list)) else (scale,)
    if len(scale) not in (1, 2):
        raise ValueError(f"scale: expected (S,) or (Smin, Smax), got {scale!r}")
    scale = tuple(check_int(s, "scale") for s in scale)
    if min(scale) < crop_size:
        raise ValueError(f"scale: expected sizes >= crop_size ({crop_size}), got {list(scale)}")
    if len(scale) == 2 and scale[1] <= scale[0]:
        raise ValueError(f"scale: expected Smin < Smax, got {list(scale)}")
    folders = {}
    for part in ("train", "val"):
        path = os.path.join(os.fspath(root), part)
        if not os.path.isdir(path):
            raise ValueError(f"root: expected {path} (one sub-folder per class), found none")
        folders[part] = path
    val_scale = scale[0] if len(scale) == 1 else (scale[0] + scale[1]) // 2
    view = Compose(Rescale(val_scale), CenterCrop(crop_size))
    train = ImageFolder(folders["train"], view, on_error=on_error, seed=seed)
    if len(train) == 0:
        raise ValueError(f"root: {folders['train']} holds no images")
    sample = [train[int(i)][0] for i in _evenly_spaced(len(train), STATISTICS_SAMPLE)]
    mean = mean_rgb(sample)
    std = std_rgb(sample) if standardize else None
    normalize = SubtractMean(mean, std)
    pca = PCAColor(*fit_pca_color(sample)) if pca_color else None
    rescaling = Rescale(scale[0]) if len(scale) == 1 else ScaleJitter(*scale)
    augment = [rescaling, RandomCrop(crop_size), RandomHorizontalFlip()]
    train.transform = Compose(*augment, *([pca] if pca else []), normalize)
    info = {"classes": list(train.classes), "mean_rgb": [float(v) for v in mean],
            "std_rgb": None if std is None else [float(v) for v in std],
            "crop_size": crop_size, "scale": list(scale), "val_scale": val_scale,
            "pca_color": bool(pca_color)}
    val = ImageFolder(folders["val"], Compose(view, normalize), on_error=on_error,
                      class_index=train.classes)
    return FolderSets(train, val, info)


def _evenly_spaced(count, most):
    return np.unique(np.linspace(0, count - 1, min(count, most)).round().astype(np.int64))


def write_data_info(path, info) -> None:
    """``info`` (:attr:`FolderSets.info`) as JSON at ``path``, atomically."""
    from deepconv.checkpoint import atomic_write_json

    atomic_write_json(path, info)


def read_data_info(path) -> dict:
    """What :func:`write_data_info` wrote; ValueError naming the file if it
    is not such a file."""
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it as a deepconv {DATA_INFO} ({exc})") from None
    if not isinstance(info, dict) or not _three_numbers(info.get("mean_rgb")):
        raise ValueError(f"{path}: not a deepconv {DATA_INFO} (no mean_rgb of three numbers)")
    if info.get("std_rgb") is not None and not _three_numbers(info["std_rgb"]):
        raise ValueError(f"{path}: std_rgb must be three numbers or null")
    return info


def _three_numbers(value) -> bool:
    return (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
