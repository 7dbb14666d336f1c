"""Datasets and loading: in-memory arrays, small bundled datasets (digits),
and a deterministic batch loader with background threads."""

from deepconv.data.datasets import ArrayDataset, digits, digits_split
from deepconv.data.loader import DataLoader, epoch_order, random_shift

DATASETS = {"digits": digits}  # name -> function(split, seed): what ``deepconv train --data`` accepts

__all__ = ["ArrayDataset", "DATASETS", "DataLoader", "digits", "digits_split", "epoch_order", "random_shift"]
