"""Shared fixtures. Tests run against the INSTALLED deepconv package."""

import os

import numpy as np
import pytest

import deepconv

CUDA_SKIP = pytest.mark.skipif(
    not deepconv.cuda_available(), reason="no usable CUDA device (deepconv.cuda_available() is False)"
)

# Two emulated devices (memory domains), and the first GPU where there is one.
DEVICES = [
    pytest.param("emu:0", id="emu:0"),
    pytest.param("emu:1", id="emu:1"),
    pytest.param("cuda:0", id="cuda:0", marks=CUDA_SKIP),
]
FLOAT_DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


# Where every reference is installed (CI sets it), a test skipped for any
# reason but the absence of a GPU is a failure: a missing package must not
# silently turn a parity test into a pass.
ONLY_CUDA_SKIPS_ENV = "DEEPCONV_ONLY_CUDA_SKIPS"
_CUDA_SKIP_REASON = "no usable CUDA device"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get(ONLY_CUDA_SKIPS_ENV) != "1":
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if _CUDA_SKIP_REASON not in reason:
        report.outcome = "failed"
        report.longrepr = f"skipped, but {ONLY_CUDA_SKIPS_ENV}=1 allows only CUDA skips: {reason}"


@pytest.fixture
def rng():
    """A freshly seeded generator: every test sees the same numbers."""
    return np.random.default_rng(20120101)


@pytest.fixture(params=DEVICES)
def device(request):
    """Each device the op tests run on: emulated ones always, CUDA when available."""
    return deepconv.device(request.param)


@pytest.fixture(params=FLOAT_DTYPES)
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture(autouse=True)
def _clean_transfer_stats():
    deepconv.reset_transfer_stats()
    yield
    deepconv.reset_transfer_stats()


# Helpers shared by the op tests (importable as `conftest`: pyproject.toml
# puts tests/ on sys.path).


def on(device, host):
    """A fresh copy of the numpy array ``host`` on ``device``. In-place ops on
    it never touch ``host`` (on emu:0, asarray alone would return ``host``)."""
    return deepconv.asarray(np.array(host), device=device)


def assert_bitwise_equal(actual, expected):
    """Same shape, dtype and bits (NaN payloads and -0.0 included)."""
    actual, expected = deepconv.to_numpy(actual), deepconv.to_numpy(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    bits = f"u{actual.itemsize}"
    assert np.array_equal(actual.view(bits), expected.view(bits))


def assert_rejected(call, error, message, arrays):
    """``call(arrays)`` raises ``error`` matching ``message`` and, since
    validation comes before any kernel runs, leaves every array untouched."""
    before = {k: np.array(v) for k, v in arrays.items()}
    with pytest.raises(error, match=message):
        call(arrays)
    for name, arr in arrays.items():
        assert np.array_equal(arr, before[name], equal_nan=True), name
