"""conv2d_wgrad's bias gradient on the emulator, to the bit.

The emulator computes db with one thread per filter (no barriers), and must
give exactly what the 64-thread block reduction it replaced gave: lane t sums
the elements t, t + 64, ... of each image's plane in turn, then the lanes are
added in a pairwise tree (half = 32, 16, ..., 1). This rebuilds that order in
numpy (elementwise adds only, so each add is one IEEE rounding) and compares
the bits.
"""

import numpy as np
import pytest

import deepconv
from deepconv.ops import conv2d_wgrad

LANES = 64  # kBiasThreads of the emulator build (ops/conv_wgrad.cu)


def lane_tree_bias_grad(dy):
    n, k = dy.shape[:2]
    planes = dy.reshape(n, k, -1)
    partial = np.zeros((k, LANES), dtype=dy.dtype)
    for image in planes:
        for start in range(0, image.shape[1], LANES):
            chunk = image[:, start:start + LANES]
            partial[:, :chunk.shape[1]] += chunk
    half = LANES // 2
    while half:
        partial[:, :half] += partial[:, half:2 * half]
        half //= 2
    return partial[:, 0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 5, 9, 9), (2, 7, 1, 1), (1, 3, 13, 10)])
def test_bias_grad_matches_the_block_reduction_order(dtype, shape):
    n, k, h, w = shape
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, 2, h, w)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    dev = deepconv.device("emu:0")
    _, db = conv2d_wgrad(deepconv.asarray(x, device=dev), deepconv.asarray(dy, device=dev),
                         (k, 2, 3, 3), 1, 1)
    got = np.asarray(deepconv.to_numpy(db))
    expected = lane_tree_bias_grad(dy)
    assert got.dtype == expected.dtype
    assert got.tobytes() == expected.tobytes()
