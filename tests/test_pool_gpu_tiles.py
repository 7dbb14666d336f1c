"""Max pooling with the GPU build's launch choices (one output, or input,
element per thread instead of the emulator's row per thread), on the
emulator through the test-only module ``deepconv._emu_gputiles``. Apart from
test_pool.py because the AddressSanitizer CI job runs test_pool.py against
a build without that module."""

import numpy as np
import pytest

import deepconv
from deepconv import _emu_gputiles
from deepconv.backend import emu as emu_backend

from test_pool import PROBLEMS, check_pool, pool_reference, sample


@pytest.mark.parametrize("problem", ["vgg_2s2_odd", "stride_gt_kernel", "alexnet_3s2", "rect"])
def test_gpu_work_split(monkeypatch, problem, rng):
    # deepconv._emu_gputiles makes the GPU build's launch choices: one output
    # (or input) element per thread instead of the emulator's row per thread.
    monkeypatch.setattr(emu_backend.BACKEND, "module", _emu_gputiles)
    shape, kernel, stride, padding, ceil_mode = PROBLEMS[problem]
    x_host = sample(rng, shape, np.float32, "ties")
    y_shape = pool_reference(x_host, kernel, stride, padding, ceil_mode)[0].shape
    dy_host = sample(rng, y_shape, np.float32)
    check_pool(deepconv.device("emu:0"), x_host, dy_host, kernel, stride, padding, ceil_mode)
