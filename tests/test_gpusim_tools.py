"""The simulated-GPU job's host side (tools/gpusim/checks.py, runner.cu,
benchmarks/gpusim_conv.py), checked without the simulator: the plan covers
every op family, names only ops the runner handles, and every check's
emulator reference runs. The simulated run itself is CI's job
(tools/gpusim/run.sh)."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GPUSIM = ROOT / "tools" / "gpusim"


def load_checks():
    spec = importlib.util.spec_from_file_location("gpusim_checks", GPUSIM / "checks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def all_checks(module):
    rng = np.random.default_rng(1)
    return module.conv_checks(rng) + module.other_checks(rng)


def test_every_op_family_is_checked_by_an_op_the_runner_handles():
    checks = all_checks(load_checks())
    handled = set(re.findall(r'\{"(\w+)", \[\]\(Call& c\)', (GPUSIM / "runner.cu").read_text()))
    ops = {c.op for c in checks}
    assert ops <= handled, f"checks name ops runner.cu does not handle: {ops - handled}"
    # Every launcher file csrc/ops/<family>[_<pass>].cu has a check of its
    # family (philox4x32_10 lives in dropout.cu, not the simulator's own check).
    families = {cu.stem.split("_")[0] for cu in (ROOT / "csrc" / "ops").glob("*.cu")}
    family_of = {"conv2d": "conv", "max": "pool", "philox4x32": "dropout", "literal": None}
    checked = {family_of.get(op.split("_")[0], op.split("_")[0]) for op in ops}
    assert families <= checked, f"op families without a simulated-GPU check: {families - checked}"
    assert len({c.name for c in checks}) == len(checks)


def test_plan_lines_and_references(tmp_path):
    module = load_checks()
    checks = all_checks(module)
    module.write_plan(checks, tmp_path / "plan.txt", str(tmp_path))
    lines = (tmp_path / "plan.txt").read_text().splitlines()
    assert len(lines) == len(checks)
    for line, check in zip(lines, checks):
        name, op, *tokens = line.split()
        assert (name, op) == (check.name, check.op)
        assert all(re.fullmatch(r"(b:\d+|n:|i:-?\d+|f:\S+|s:\w+|t:[\d,]+)", t) for t in tokens), line
        assert len(check.buffers) == sum(t.startswith("b:") for t in tokens)
        for j in range(len(check.buffers)):
            assert (tmp_path / f"{name}.{j}.bin").exists()
        # The emulator reference runs and has the compared outputs' shapes.
        refs = module.emu_reference(check)
        assert len(refs) == len(check.outputs)
        for ref, i in zip(refs, check.outputs):
            assert np.shape(ref) == check.args[i].array.shape


def test_benchmark_rejects_unknown_layers():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpusim_conv.py"), "--layers", "conv9_9"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "--layers: unknown ['conv9_9']" in r.stderr
