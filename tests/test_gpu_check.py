"""tools/gpu_check.sh (the GPU acceptance check) stops cleanly, with a clear
message and exit status 2, where there is no GPU to check: without an
NVIDIA driver (no nvidia-smi) and with one that cannot reach a GPU. The GPU
path itself needs a GPU (README, "Checking a GPU machine")."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "gpu_check.sh"


def run_without_gpu(tmp_path, nvidia_smi=None, **extra_env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "head", "cut", "sed", "tr", "date", "ls", "printf", "cat"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    if nvidia_smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(nvidia_smi)
        fake.chmod(0o755)
    env = {**os.environ, "PATH": str(bin_dir), "GPU_CHECK_BUILD": str(tmp_path / "build"),
           **extra_env}
    return subprocess.run([shutil.which("bash"), str(SCRIPT)], capture_output=True, text=True,
                          env=env, timeout=60)


def test_no_driver(tmp_path):
    r = run_without_gpu(tmp_path)
    assert r.returncode == 2, r.stderr
    assert "no usable NVIDIA GPU on this machine: nvidia-smi not found" in r.stderr
    assert "tools/gpusim/run.sh" in r.stderr  # says what to run instead
    assert not (tmp_path / "build").exists()  # nothing was built


@pytest.mark.parametrize("script, message", [
    ("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the "
     "NVIDIA driver.' >&2\nexit 9\n", "nvidia-smi failed: NVIDIA-SMI has failed"),
    ("#!/bin/sh\nexit 0\n", "nvidia-smi lists no GPU"),
    ("#!/bin/sh\necho 'NVIDIA H100, 9.0'\n", "nvcc is not"),
], ids=["driver_error", "no_gpu_listed", "no_nvcc"])
def test_unusable_gpu(tmp_path, script, message):
    r = run_without_gpu(tmp_path, script, GPU_CHECK_NVCC=str(tmp_path / "no-nvcc"))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert not (tmp_path / "build").exists()
