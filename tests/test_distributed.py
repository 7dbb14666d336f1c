"""Data parallel training across MPI ranks (deepconv.parallel.distributed):
``mpiexec -n N`` runs against the same training in one process, files
written by rank 0 only, a failing or killed rank ending the job, and the
rank-sharded loader.

The MPI runs are subprocesses started from a directory outside the
repository, with the installed deepconv first on the path (as in
test_cli.py). mpiexec comes from the ``mpich`` wheel (``pip install
".[test]"`` puts it beside the Python executable).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import deepconv
from deepconv.checkpoint import load_file
from deepconv.data import ArrayDataset, DataLoader
from deepconv.models import digits_net
from deepconv.parallel import DataParallel, DistributedDataParallel, launched_world_size
from deepconv.parallel.data_parallel import shard_sizes
from deepconv.train import TrainingDiverged

import mpi_worker

WORKER = Path(mpi_worker.__file__).resolve()
# A few seconds each: 1 epoch of a width-8 digits_net; batch 25 leaves a
# last batch of 17 (1442 = 57 * 25 + 17), cut 9 + 8 over two ranks.
TRAIN_ARGS = ["train", "--epochs", "1", "--model-arg", "width=8", "--batch-size", "25",
              "--lr-step", "0", "--workers", "1"]
RANK0_FILES = {"checkpoint.safetensors", "best.safetensors", "log.csv", "log.jsonl", "curves.png"}


def _mpiexec():
    # pip puts the mpich wheel's launcher beside the interpreter (a venv's
    # bin/, or the scripts folder of the installation).
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        if (folder / "mpiexec").exists():
            return str(folder / "mpiexec")
    found = shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpiexec not found: pip install '.[test]' (or '.[mpi]') installs mpich")
    return found


def _env(**extra):
    env = dict(os.environ)
    env.pop("DEEPCONV_EMU_DEVICES", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(deepconv.__file__).resolve().parent.parent)]
        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(extra)
    return env


def _run(args, ranks=None, timeout=120, cwd=None):
    launcher = [_mpiexec(), "-n", str(ranks)] if ranks else []
    return subprocess.run(launcher + [sys.executable] + args, capture_output=True, text=True,
                          env=_env(), cwd=cwd or tempfile.gettempdir(), timeout=timeout)


def _tensors(path):
    return load_file(path)[0]


def _assert_same_tensors(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].tobytes() == b[name].tobytes(), name


def test_mpiexec_training_equals_in_process_data_parallel_and_only_rank0_writes(tmp_path):
    pytest.importorskip("sklearn")
    one = _run(["-m", "deepconv"] + TRAIN_ARGS + ["--devices", "emu:0,emu:1",
                                                  "--out", str(tmp_path / "devices")])
    assert one.returncode == 0, one.stderr
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    mpi = _run(["-m", "deepconv"] + TRAIN_ARGS + ["--out", str(tmp_path / "mpi")], ranks=2,
               cwd=cwd)
    assert mpi.returncode == 0, mpi.stderr
    assert "2 MPI ranks" in mpi.stderr
    # The same bits: weights and momentum buffers (float32; both sum the
    # shards' gradients in device / rank order and step once on the first).
    _assert_same_tensors(_tensors(tmp_path / "devices" / "checkpoint.safetensors"),
                         _tensors(tmp_path / "mpi" / "checkpoint.safetensors"))
    # Rank 0 alone printed and wrote: one summary, the usual files, no
    # stray temporary file, nothing in the working directory.
    assert mpi.stdout.count("test accuracy") == 1
    assert mpi.stderr.count("deepconv train:") == 1
    assert {p.name for p in (tmp_path / "mpi").iterdir()} == RANK0_FILES
    assert list(cwd.iterdir()) == []


def test_fit_across_three_ranks_equals_data_parallel_over_three_devices(tmp_path):
    # A model with dropout and a plateau schedule (rank 0 validates and
    # broadcasts the metric); uneven shards (4, 3, 3 and 3, 3, 2).
    devices = ["emu:0", "emu:1", "emu:2"]
    mpi_worker.train(lambda net: DataParallel(net, devices), tmp_path / "devices")
    mpi = _run([str(WORKER), "fit", str(tmp_path / "mpi")], ranks=3)
    assert mpi.returncode == 0, mpi.stderr
    _assert_same_tensors(_tensors(tmp_path / "devices" / "checkpoint.safetensors"),
                         _tensors(tmp_path / "mpi" / "checkpoint.safetensors"))
    rows = [json.loads(line) for line in (tmp_path / "mpi" / "log.jsonl").read_text().splitlines()]
    assert len(rows) == mpi_worker.EPOCHS and rows[-1]["lr"] < rows[0]["lr"]  # the plateau acted


def test_resumed_runs_equal_straight_ones_in_process_and_across_ranks(tmp_path):
    # fit() re-broadcasts the loaded weights and restores every replica's
    # dropout counter: a resumed run ends with the bits of a straight one.
    def two_devices(net):
        return DataParallel(net, ["emu:0", "emu:1"])

    mpi_worker.train(two_devices, tmp_path / "straight")
    mpi_worker.train(two_devices, tmp_path / "resumed", epochs=1)
    mpi_worker.train(two_devices, tmp_path / "resumed", resume=True)
    out = str(tmp_path / "mpi")
    first = _run([str(WORKER), "fit", out, "1"], ranks=2)
    assert first.returncode == 0, first.stderr
    second = _run([str(WORKER), "fit", out, str(mpi_worker.EPOCHS), "resume"], ranks=2)
    assert second.returncode == 0, second.stderr
    straight = _tensors(tmp_path / "straight" / "checkpoint.safetensors")
    _assert_same_tensors(straight, _tensors(tmp_path / "resumed" / "checkpoint.safetensors"))
    _assert_same_tensors(straight, _tensors(tmp_path / "mpi" / "checkpoint.safetensors"))


def test_a_diverging_data_parallel_fit_stops_before_updating(tmp_path):
    def two_devices(net):
        return DataParallel(net, ["emu:0", "emu:1"])

    mpi_worker.train(two_devices, tmp_path, epochs=1)
    before = (tmp_path / "checkpoint.safetensors").read_bytes()
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at epoch 1, step"):
        mpi_worker.train(two_devices, tmp_path, lr=1e30)
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == before


@pytest.mark.parametrize("mode, message", [
    ("fail", "mpi_worker: rank 1 of 2: ValueError: a failure on rank 1 only"),
    ("mismatch", "model: rank 1 built a model with different parameters"),
])
def test_an_error_on_a_rank_ends_every_rank(mode, message):
    started = time.perf_counter()
    result = _run([str(WORKER), mode], ranks=2, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr
    assert time.perf_counter() - started < 30


def test_a_killed_rank_ends_the_job_within_seconds(tmp_path):
    pytest.importorskip("sklearn")
    tag = uuid.uuid4().hex
    log = tmp_path / "mpiexec.log"
    command = [_mpiexec(), "-n", "2", sys.executable, "-m", "deepconv"] + TRAIN_ARGS + [
        "--epochs", "100", "--out", str(tmp_path / "out")]
    with open(log, "w") as sink:
        job = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                               env=_env(DEEPCONV_TEST_RUN=tag), cwd=tempfile.gettempdir(),
                               start_new_session=True)
    try:
        _wait_for(lambda: "step 20/" in log.read_text(), job, 60, "training to start")
        os.kill(_rank_pid(tag, 1), signal.SIGKILL)
        killed = time.perf_counter()
        returncode = job.wait(timeout=15)
        took = time.perf_counter() - killed
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    output = log.read_text()
    assert returncode != 0, output
    assert took < 10, output
    assert "BAD TERMINATION" in output or "Killed" in output, output


def _wait_for(condition, job, seconds, what):
    deadline = time.perf_counter() + seconds
    while not condition():
        assert job.poll() is None, f"mpiexec ended before {what}"
        assert time.perf_counter() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _rank_pid(tag, rank):
    """The process of ``rank`` in the job tagged ``tag``: its environment
    holds the tag (passed on by mpiexec) and the PMI rank."""
    wanted = {f"DEEPCONV_TEST_RUN={tag}".encode(), f"PMI_RANK={rank}".encode()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:  # gone, or not ours
            continue
        if wanted <= env:
            return int(entry.name)
    raise AssertionError(f"no process of rank {rank} found")


# --- in process: the sharded loader, the launcher's environment, argument checks ------


def _indexed(n):
    """Images whose first pixel is the example's index."""
    images = np.zeros((n, 1, 2, 2), np.float32)
    images[:, 0, 0, 0] = np.arange(n)
    return ArrayDataset(images, np.arange(n) % 3)


@pytest.mark.parametrize("size", [2, 3])
def test_sharded_loader_gives_exactly_the_data_parallel_shards(size):
    data = _indexed(23)  # batches of 7, 7, 7, 2: shards of unequal sizes
    whole = DataLoader(data, 7, shuffle=True, seed=4)
    parts = [DataLoader(data, 7, shuffle=True, seed=4, shard=(r, size), num_workers=r)
             for r in range(size)]
    dp = DataParallel(digits_net(width=4), [f"emu:{d}" for d in range(size)])
    for epoch in (0, 1):
        for loader in [whole] + parts:
            loader.set_epoch(epoch)
        for k, batch in enumerate(zip(whole, *parts)):
            (x, y), shards = batch[0], batch[1:]
            if x.shape[0] < size:  # DataParallel refuses a batch smaller than its devices
                assert [s[0].shape[0] for s in shards] == shard_sizes(x.shape[0], size)
                continue
            for (xs, ys), xd, yd in zip(shards, dp.scatter(x), dp.scatter(y, arg="y")):
                assert xs.tobytes() == deepconv.to_numpy(xd).tobytes(), (epoch, k)
                assert ys.tobytes() == deepconv.to_numpy(yd).tobytes(), (epoch, k)
    assert len(parts[1]) == len(whole) == 4
    assert "shard=(1, " in repr(parts[1])


def test_a_transform_draws_per_rank_and_one_shard_is_unsharded():
    data = _indexed(12)
    seen = []

    def record(x, y, rng):
        seen.append(rng.integers(1 << 30))
        return x, y

    for shard in (None, (0, 1), (0, 2), (1, 2)):
        list(DataLoader(data, 4, transform=record, shard=shard))
    unsharded, single, rank0, rank1 = (seen[i:i + 3] for i in range(0, 12, 3))
    assert unsharded == single and rank0 != rank1 and rank0 != unsharded


@pytest.mark.parametrize("shard, error, message", [
    ((2, 2), ValueError, r"shard: expected 0 <= rank < size, got rank 2, size 2"),
    ((0, 0), ValueError, r"shard\[1\] \(size\): expected an int >= 1"),
    ((0,), TypeError, r"shard: expected None or a \(rank, size\) pair"),
    (("0", 2), TypeError, r"shard\[0\] \(rank\): expected an int"),
])
def test_sharded_loader_rejects_bad_shards(shard, error, message):
    with pytest.raises(error, match=message):
        DataLoader(_indexed(4), 2, shard=shard)


def test_launched_world_size_reads_the_launchers_variables(monkeypatch):
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert launched_world_size() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert launched_world_size() == 4


def test_devices_option_is_refused_under_mpi_and_checked():
    pytest.importorskip("sklearn")
    result = _run(["-m", "deepconv"] + TRAIN_ARGS + ["--devices", "emu:0,emu:0"])
    assert result.returncode == 2 and "devices: expected distinct devices" in result.stderr
    result = _run(["-m", "deepconv"] + TRAIN_ARGS + ["--devices", "emu:0,emu:1", "--mpi"])
    assert result.returncode != 0
    assert "--devices: not under MPI" in result.stderr


def test_distributed_data_parallel_checks_its_model():
    with pytest.raises(TypeError, match="model: expected a deepconv.nn.Layer, got str"):
        DistributedDataParallel("net", comm=None)
