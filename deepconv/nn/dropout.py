"""Dropout: a layer over deepconv.ops.dropout / dropout_backward."""

from __future__ import annotations

from deepconv.nn.layer import Layer, args_repr, check_input, check_int, check_real, is_int
from deepconv.ops import dropout, dropout_backward
from deepconv.ops.dropout import SCALE_AT

__all__ = ["Dropout"]


class Dropout(Layer):
    """Drops each element with probability ``p`` in training.

    The mask comes from Philox keyed by ``seed`` with counter ``step``: every
    training forward uses the current ``step`` and then advances it, so each
    batch draws a new mask, the backward regenerates the forward's, and the
    same seed and step give the same mask on every device. Give every
    dropout layer of a network its own ``seed``; save ``step`` with a
    checkpoint to resume the same sequence of masks.

    ``scale_at="train"`` (inverted dropout, as Caffe and PyTorch): kept
    elements are scaled by 1 / (1 - p) in training, evaluation is the
    identity. ``scale_at="test"`` (AlexNet): no scaling in training,
    evaluation multiplies by 1 - p.
    """

    def __init__(self, p=0.5, seed=0, scale_at="train"):
        super().__init__()
        self.p = check_real(p, "p", low=0.0, high=1.0, high_open=True)
        self.seed = seed
        if scale_at not in SCALE_AT:
            raise ValueError(f"scale_at: expected one of {SCALE_AT}, got {scale_at!r}")
        self.scale_at = scale_at
        self.step = 0
        self._used = None  # (step, training) of the last forward

    @property
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value):
        check_int(value, "seed", minimum=0)
        if value >= 2**64:
            raise ValueError(f"seed: expected an int in [0, 2**64), got {value}")
        self._seed = int(value)

    @property
    def step(self) -> int:
        return self._step

    @step.setter
    def step(self, value):
        if not is_int(value) or not 0 <= value < 2**64:
            raise ValueError(f"step: expected an int in [0, 2**64), got {value!r}")
        self._step = int(value)

    def _identity(self, training):
        return self.p == 0.0 or (not training and self.scale_at == "train")

    def _args(self, step, training):
        return dict(p=self.p, seed=self.seed, step=step, training=training, scale_at=self.scale_at)

    def forward(self, x):
        check_input(x, "x")
        step, training = self.step, self.training
        if training:
            self.step = (step + 1) % 2**64
        self._used = (step, training)
        if self._identity(training):
            return x
        return dropout(x, out=self._buffer_like("y", x), **self._args(step, training))

    def backward(self, dy):
        if self._used is None:
            raise RuntimeError("Dropout.backward: call forward first")
        check_input(dy, "dy")
        step, training = self._used
        if self._identity(training):
            return dy
        return dropout_backward(dy, out=self._buffer_like("dx", dy), **self._args(step, training))

    def extra_repr(self):
        return args_repr(p=(self.p, 0.5), seed=(self.seed, 0), scale_at=(self.scale_at, "train"))
