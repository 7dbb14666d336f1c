"""`deepconv info`, as a console command and as `python -m deepconv`."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import deepconv


def _console_script():
    # The console script installed beside the package (pip --target puts it in
    # <target>/bin), else the one on PATH.
    beside = Path(deepconv.__file__).resolve().parent.parent / "bin" / "deepconv"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("deepconv")
    return [found] if found else None


COMMANDS = {
    "module": [sys.executable, "-m", "deepconv"],
    "console_script": _console_script(),
}


def run(command, *args):
    if command is None:
        pytest.skip("the `deepconv` console script is not installed")
    env = dict(os.environ)
    env.pop("DEEPCONV_EMU_DEVICES", None)
    # The installed package must win over any source checkout on the path.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(deepconv.__file__).resolve().parent.parent)]
        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    # Run from a neutral directory: `python -m` puts the working directory
    # first on sys.path, and a source checkout there would shadow the install.
    return subprocess.run(command + list(args), capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir(), timeout=120)


@pytest.fixture(params=COMMANDS)
def command(request):
    return COMMANDS[request.param]


def test_info_text(command):
    result = run(command, "info")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"deepconv {deepconv.__version__}" in out
    assert "emu:  built: yes" in out
    assert "cuda: built:" in out
    assert "devices: emu:0 emu:1 emu:2 emu:3 emu:4 emu:5 emu:6 emu:7" in out
    assert "CUDA available: " in out
    for setting in ("threads", "race_check", "context_switch", "stack_bytes", "sanitizer"):
        assert f"  {setting}: " in out, setting
    assert "virtual devices: 8" in out


def test_info_json(command):
    result = run(command, "info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["version"] == deepconv.__version__
    assert info["backends"]["emu"]["built"] is True
    assert info["backends"]["emu"]["path"].endswith(tuple([".so", ".pyd", ".dylib"]))
    assert isinstance(info["backends"]["cuda"]["built"], bool)
    assert info["cuda_available"] == deepconv.cuda_available()
    assert info["devices"][:8] == [f"emu:{i}" for i in range(8)]
    for setting in ("threads", "race_check", "context_switch", "stack_bytes", "sanitizer"):
        assert setting in info["emulator"]
    assert info["emulator"]["virtual_devices"] == 8


def test_info_reports_cuda_status():
    result = run(COMMANDS["module"], "info", "--json")
    cuda = json.loads(result.stdout)["backends"]["cuda"]
    text = run(COMMANDS["module"], "info").stdout
    if not deepconv.cuda_available():
        assert "CUDA available: no (" in text
    if cuda["built"]:
        assert cuda["architectures"], cuda
        assert isinstance(cuda["runtime_version"], int)
        assert cuda["status"] in text
        assert "architectures: " + " ".join(cuda["architectures"]) in text
    else:
        assert "cuda: built: no" in text


def test_no_subcommand_prints_help_and_exits_2(command):
    result = run(command)
    assert result.returncode == 2
    assert "usage: deepconv" in result.stderr
    assert "info" in result.stderr


def test_unknown_subcommand_fails(command):
    result = run(command, "frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_version_flag(command):
    result = run(command, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"deepconv {deepconv.__version__}"
