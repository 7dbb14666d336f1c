"""The benchmarks run and print their tables (a smoke test: the figures
themselves are for people, read in one run beside the reference)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script, *args, tmp_path):
    # cwd outside the repository, so that the installed deepconv is imported.
    out = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True,
                         text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_conv3x3_validates_and_reports_gflops(tmp_path):
    stdout = run("conv3x3.py", "--set", "cifar", "--batch", "1", "--repeat", "1",
                 "--passes", "fprop,dgrad,wgrad", "--json", tmp_path=tmp_path)
    result = json.loads(stdout.strip().splitlines()[-1])
    assert {r["pass"] for r in result["rows"]} == {"fprop", "dgrad", "wgrad"}
    assert len(result["rows"]) == 27  # 9 shapes x 3 passes
    for row in result["rows"]:
        assert row["max_rel_error"] <= 1e-3 and row["deepconv"] > 0 and row["numpy"] > 0
        # every algorithm side by side; deepconv's column is auto's, whose variant is named
        assert set(row["algorithms"]) == {"auto", "implicit_gemm", "winograd"}
        assert row["deepconv"] == row["algorithms"]["auto"]
        assert row["variant"].startswith(("implicit_gemm", "winograd_"))
    assert "cifar_median_fprop_ratio_numpy" in result["summary"]
    # cifar at batch 1: conv1_2 (64 -> 64, 32x32: 64 F(4x4) tiles) runs F(4x4) under auto
    conv1_2 = [r for r in result["rows"] if (r["C"], r["K"]) == (64, 64)]
    assert {r["variant"] for r in conv1_2} == {"winograd_4x4"}


def test_train_step_prints_images_per_second(tmp_path):
    stdout = run("train_step.py", "--networks", "digits_net", "--batch", "4", "--repeat", "1",
                 "--json", "--profile", tmp_path=tmp_path)
    result = json.loads(stdout.strip().splitlines()[-1])
    row = result["rows"]["digits_net"]
    assert row["batch"] == 4 and row["deepconv"] > 0
    # the profile charges each kernel call to its layer and pass, conv calls by variant
    assert "digits_net: one profiled step" in stdout
    assert "conv2.backward" in stdout and "conv2d_wgrad [" in stdout
    assert "optimizer.step" in stdout and "(python:" in stdout
    if "torch" in row:
        assert "digits_net: deepconv reaches" in stdout and row["ratio_torch"] > 0


def test_conv3x3_rejects_an_unknown_pass(tmp_path):
    out = subprocess.run([sys.executable, str(BENCHMARKS / "conv3x3.py"), "--passes", "bprop"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "--passes" in out.stderr


@pytest.mark.slow
def test_emulator_benchmark_prints_barrier_cost_and_relu_throughput(tmp_path):
    stdout = run("emulator.py", "--repeat", "1", "--json", tmp_path=tmp_path)
    assert "barrier" in stdout.lower() and "relu" in stdout.lower()
