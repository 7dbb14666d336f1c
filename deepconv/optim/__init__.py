"""Optimisers and learning-rate schedules."""

from deepconv.optim.schedules import ReduceOnPlateau, StepLR
from deepconv.optim.sgd import SGD

__all__ = ["SGD", "StepLR", "ReduceOnPlateau"]
