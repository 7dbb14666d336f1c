"""LRN: a layer over deepconv.ops.lrn / lrn_backward."""

from __future__ import annotations

from deepconv.nn.layer import Layer, args_repr, check_input, check_int, check_real
from deepconv.ops import lrn, lrn_backward
from deepconv.ops.lrn import ALPHA_CONVENTIONS

__all__ = ["LRN"]


class LRN(Layer):
    """Local response normalisation across channels (AlexNet section 3.3)::

        y_c = x_c / (k + alpha_eff * sum over the size channels around c of x^2) ** beta

    with ``alpha_eff = alpha`` (``alpha_convention="paper"``, the formula as
    Krizhevsky et al. print it; the defaults are AlexNet's) or ``alpha /
    size`` (``"per_size"``, the convention of Caffe, cuda-convnet and
    PyTorch's ``LocalResponseNorm``). See :func:`deepconv.ops.lrn`.
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0, alpha_convention="paper"):
        super().__init__()
        self.size = check_int(size, "size")
        if self.size % 2 == 0:
            raise ValueError(f"size: expected an odd integer, got {size}")
        self.alpha = check_real(alpha, "alpha", low=0.0)
        self.beta = check_real(beta, "beta")
        self.k = check_real(k, "k", low=0.0, low_open=True)
        if alpha_convention not in ALPHA_CONVENTIONS:
            raise ValueError(
                f"alpha_convention: expected one of {ALPHA_CONVENTIONS}, got {alpha_convention!r}"
            )
        self.alpha_convention = alpha_convention
        self._saved = None

    def _args(self):
        return dict(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k,
                    alpha_convention=self.alpha_convention)

    def forward(self, x):
        check_input(x, "x", ndim=4)
        y = lrn(x, out=self._buffer_like("y", x), **self._args())
        self._saved = (x, y)
        return y

    def backward(self, dy):
        if self._saved is None:
            raise RuntimeError("LRN.backward: call forward first")
        x, y = self._saved
        check_input(dy, "dy", ndim=4)
        return lrn_backward(x, y, dy, out=self._buffer_like("dx", x), **self._args())

    def to(self, device):
        self._saved = None
        return super().to(device)

    def extra_repr(self):
        return args_repr(size=(self.size, 5), alpha=(self.alpha, 1e-4), beta=(self.beta, 0.75),
                         k=(self.k, 2.0), alpha_convention=(self.alpha_convention, "paper"))
