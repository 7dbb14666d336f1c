"""conv2d_dgrad for filters holding NaN or Inf: one product per filter tap.

The implicit GEMM kernels compute ``dx[n, c, h, w] = sum over (k, r, s) of
dy[n, k, p, q] * w[k, c, r, s]`` over *every* tap, reading 0 for the dy of
a tap that lands outside the output (zero padding, or between strides).
With finite filters that 0 adds nothing; with an infinite tap it adds
``0 * inf = NaN``, where PyTorch (whose col2im only scatters the taps that
land) gives a finite dx. Masking per (pixel, tap) inside the kernels' main
loop would cost every call; instead :func:`needs_taps` looks at the
(small) filter tensor first and only a non-finite one is served here, one
matrix product per tap over exactly the pixels it reaches. Finite filters
keep the kernels' speed and their bitwise results.

The result differs from the kernels' in rounding (another summation order);
where a non-finite tap lands, the sum is the same NaN / +-Inf in any order.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dgrad_by_taps", "needs_taps"]


def needs_taps(x_shape, w, padding, be, dev) -> bool:
    """Whether ``w`` has a NaN / Inf that may meet a tap outside the output.

    A filter covering the whole unpadded input (the fully connected case)
    lands every tap, so its (large) weights need no look."""
    _, _, h, wd = x_shape
    _, _, r, s = w.shape
    if (r, s) == (h, wd) and padding == (0, 0):
        return False
    with be.activate(dev):
        return not bool(np.isfinite(w).all())


def _landing(size, out_size, tap, stride, pad):
    """``(first output index, first input index, count)`` of the outputs
    ``p`` whose tap ``tap`` reads input ``p * stride - pad + tap`` inside
    ``[0, size)``; count 0 when none does."""
    first = max(0, -(-(pad - tap) // stride))
    last = min(out_size - 1, (size - 1 + pad - tap) // stride)
    return first, first * stride - pad + tap, max(0, last - first + 1)


def dgrad_by_taps(dy, w, out, stride, padding, groups, be, dev):
    """``out = dx`` of ``conv2d`` for ``dy (N, K, P, Q)``, ``w (K, C/g, R, S)``."""
    _, c, h, wd = out.shape
    k, cg, r_taps, s_taps = w.shape
    _, _, p_size, q_size = dy.shape
    kg = k // groups
    # NaN / Inf are the point here: numpy's warnings about them are noise
    with be.activate(dev), np.errstate(invalid="ignore", over="ignore"):
        out.fill(0)
        for r in range(r_taps):
            p0, h0, rows = _landing(h, p_size, r, stride[0], padding[0])
            for s in range(s_taps):
                q0, w0, cols = _landing(wd, q_size, s, stride[1], padding[1])
                if rows == 0 or cols == 0:
                    continue
                h_slice = slice(h0, h0 + (rows - 1) * stride[0] + 1, stride[0])
                w_slice = slice(w0, w0 + (cols - 1) * stride[1] + 1, stride[1])
                for g in range(groups):
                    grad = dy[:, g * kg:(g + 1) * kg, p0:p0 + rows, q0:q0 + cols]
                    taps = w[g * kg:(g + 1) * kg, :, r, s]  # (K/g, C/g)
                    # (N, rows, cols, K/g) @ (K/g, C/g), back to (N, C/g, rows, cols)
                    part = (grad.transpose(0, 2, 3, 1) @ taps).transpose(0, 3, 1, 2)
                    out[:, g * cg:(g + 1) * cg, h_slice, w_slice] += part
    return out
