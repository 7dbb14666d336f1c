"""Datasets and loading: in-memory arrays, small bundled datasets (digits),
folders of images in the ImageNet layout (Pillow, imported when an image is
decoded), transforms (deepconv.data.transforms), and a deterministic batch
loader with background threads."""

from deepconv.data.datasets import ArrayDataset, digits, digits_split
from deepconv.data.folder import ImageFolder, ImageLoadError
from deepconv.data.loader import DataLoader, epoch_order, random_shift

DATASETS = {"digits": digits}  # name -> function(split, seed): what ``deepconv train --data`` accepts

__all__ = ["ArrayDataset", "DATASETS", "DataLoader", "ImageFolder", "ImageLoadError", "digits",
           "digits_split", "epoch_order", "random_shift"]
