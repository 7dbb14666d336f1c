"""SoftmaxCrossEntropy: a loss layer over the fused softmax + cross-entropy
ops."""

from __future__ import annotations

import math

from deepconv.nn.layer import Layer, check_input
from deepconv.ops import softmax_cross_entropy, softmax_cross_entropy_backward

__all__ = ["NonFiniteLoss", "SoftmaxCrossEntropy", "finite_loss"]


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite (``.loss`` is the value)."""

    def __init__(self, loss):
        super().__init__(f"the training loss became {loss}; lower the learning rate")
        self.loss = loss


def finite_loss(loss) -> float:
    """``float(loss)``; :class:`NonFiniteLoss` if it is NaN or infinite (so
    a training step can stop before it updates any weight)."""
    value = float(loss)
    if not math.isfinite(value):
        raise NonFiniteLoss(value)
    return value


class SoftmaxCrossEntropy(Layer):
    """Mean over the batch of ``-log softmax(logits)[label]``.

    ``forward(logits, labels)`` returns the loss as a 0-d array on the
    logits' device (``float(loss)`` reads it; like any layer output, the
    array is reused by the next forward) and keeps the probabilities
    (``self.probs``); ``backward()`` returns dlogits = (probs - onehot) / N,
    shaped like the logits, to feed the network's backward. ``logits``:
    (N, K) or a classifier's (N, K, 1, 1); ``labels``: int32/int64 (N,).
    """

    def __init__(self):
        super().__init__()
        self.probs = None
        self._saved = None

    def output_shape(self, input_shape):
        return ()

    def forward(self, logits, labels):
        check_input(logits, "logits", ndim=(2, 4))
        if logits.ndim == 4 and logits.shape[2:] != (1, 1):
            raise ValueError(
                f"logits: expected (N, K) or (N, K, 1, 1), got shape {tuple(logits.shape)}"
            )
        rows = logits.reshape(logits.shape[:2])
        probs = self._buffer_like("probs", rows)
        loss_out = self._buffer_like("loss", rows, ())
        loss, self.probs = softmax_cross_entropy(rows, labels, out=probs, loss_out=loss_out)
        self._saved = (logits.shape, labels)
        return loss

    def backward(self, dy=None):
        """dlogits of the mean loss (``dy``, if given, is the gradient of
        the loss itself, a number, scaling the result)."""
        if self._saved is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward: call forward first")
        shape, labels = self._saved
        scale = 1.0 / shape[0]
        if dy is not None:
            scale *= float(dy)
        out = self._buffer_like("dx", self.probs)
        dlogits = softmax_cross_entropy_backward(self.probs, labels, scale=scale, out=out)
        return dlogits.reshape(shape)

    def to(self, device):
        self.probs, self._saved = None, None
        return super().to(device)
