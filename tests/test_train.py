"""deepconv.train.fit and the ``deepconv train`` command."""

import io
import json
import math
import sys

import numpy as np
import pytest

from deepconv.cli import main
from deepconv.data import ArrayDataset, DataLoader
from deepconv.nn import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential
from deepconv.optim import SGD, ReduceOnPlateau, StepLR
from deepconv.train import LOG_COLUMNS, TrainingDiverged, evaluate, fit


def _data(n=48, seed=0):
    """Four classes: which quadrant of an 8x8 image is bright, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    images = rng.standard_normal((n, 1, 8, 8)).astype(np.float32) * 0.3
    for i, c in enumerate(labels):
        images[i, 0, (c // 2) * 4:(c // 2) * 4 + 4, (c % 2) * 4:(c % 2) * 4 + 4] += 1
    return ArrayDataset(images, labels)


def _setup(lr=0.05, schedule="step"):
    model = Sequential(("conv", Conv2d(1, 4, 3, padding=1, weight_init="glorot", input_grad=False)),
                       ReLU(), MaxPool2d(2, 2), Flatten(), ("drop", Dropout(0.3, seed=5)),
                       ("fc", Linear(64, 4, weight_init="glorot"))).reset_parameters(0)
    opt = SGD(model, lr, momentum=0.9, weight_decay=5e-4)
    sched = StepLR(opt, 1, 0.5) if schedule == "step" else ReduceOnPlateau(opt, patience=0)
    loaders = (DataLoader(_data(), 8, shuffle=True, seed=3), DataLoader(_data(16, seed=1), 16))
    return model, opt, sched, loaders


def _fit(out, epochs, resume=False, stream=None, **kwargs):
    model, opt, sched, (train, val) = _setup(**kwargs)
    result = fit(model, opt, train, val, epochs, "emu:0", out, schedule=sched, resume=resume,
                 stream=stream or io.StringIO())
    return model, opt, result


def test_fit_learns_logs_and_checkpoints(tmp_path):
    stream = io.StringIO()
    model, opt, result = _fit(tmp_path, 3, stream=stream)
    rows = result["history"]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["step"] == 18
    assert rows[-1]["val_top1_error"] <= 0.25 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert [r["lr"] for r in rows] == [0.025, 0.0125, 0.00625]
    assert result["best"]["val_top1_error"] == min(r["val_top1_error"] for r in rows)
    for name in ("checkpoint.safetensors", "best.safetensors", "log.csv", "log.jsonl"):
        assert (tmp_path / name).exists(), name
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert (tmp_path / "log.csv").read_text().splitlines()[0].split(",") == list(LOG_COLUMNS)
    text = stream.getvalue()
    assert "\r" not in text and "images/s" in text and "ETA" in text and "top-5 error" in text


def test_plot_is_written_or_skipped_with_a_notice(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    stream = io.StringIO()
    _fit(tmp_path / "a", 1, stream=stream)
    assert "matplotlib is not installed" in stream.getvalue()
    assert not (tmp_path / "a" / "curves.png").exists()
    monkeypatch.undo()
    pytest.importorskip("matplotlib")
    _fit(tmp_path / "b", 1)
    assert (tmp_path / "b" / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_progress_on_a_terminal_rewrites_one_line(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    _fit(tmp_path, 1, stream=stream)
    assert stream.getvalue().count("\r") == 6


@pytest.mark.parametrize("schedule", ["step", "plateau"])
def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path, schedule):
    straight, straight_opt, _ = _fit(tmp_path / "straight", 3, schedule=schedule)
    _fit(tmp_path / "resumed", 1, schedule=schedule)
    resumed, resumed_opt, result = _fit(tmp_path / "resumed", 3, resume=True, schedule=schedule)
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert a.tobytes() == b.tobytes(), name
    for a, b in zip(straight_opt.velocities, resumed_opt.velocities):
        assert a.tobytes() == b.tobytes()
    assert straight_opt.lr == resumed_opt.lr
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3]
    assert straight["drop"].step == resumed["drop"].step == 18


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        _fit(tmp_path, 1, resume=True)


def test_a_nan_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    _fit(tmp_path, 1)
    before = (tmp_path / "checkpoint.safetensors").read_bytes()
    with pytest.raises(TrainingDiverged, match="loss became (nan|inf) at epoch 1, step"):
        _fit(tmp_path, 3, lr=1e30)
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == before


def test_evaluate_counts_top1_and_top5_errors():
    model, _, _, (_, val) = _setup()
    result = evaluate(model, val, "emu:0")
    assert result["images"] == 16 and result["top5_error"] == 0.0  # 4 classes: always in the top 5
    assert math.isfinite(result["loss"]) and 0 <= result["top1_error"] <= 1
    assert model.training  # restored


def test_model_on_another_device_is_rejected(tmp_path):
    model, opt, sched, (train, val) = _setup()
    with pytest.raises(ValueError, match="model: parameter 'conv.weight' is on emu:0, not on emu:1"):
        fit(model, opt, train, val, 1, "emu:1", tmp_path)


def test_cli_train_on_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--workers", "2"]) == 0
    captured = capsys.readouterr()
    assert "test accuracy" in captured.out and "wall time" in captured.out
    assert (out / "checkpoint.safetensors").exists()
    assert main(["train", "--epochs", "1", "--out", str(out), "--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_cli_train_reports_errors_with_a_nonzero_status(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    assert main(["train", "--model", "no_such_net", "--out", str(tmp_path)]) == 2
    assert "no model named 'no_such_net'" in capsys.readouterr().err
    assert main(["train", "--epochs", "1", "--lr", "1e30", "--out", str(tmp_path)]) == 1
    assert "stopped: the training loss became" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert main(["train", "--out", str(tmp_path / "x")]) == 2
    assert "needs scikit-learn" in capsys.readouterr().err


def test_cli_resume_from_a_bad_checkpoint_is_one_line_and_status_2(tmp_path, capsys):
    pytest.importorskip("sklearn")
    bad = tmp_path / "checkpoint.safetensors"
    bad.write_bytes(b"\x10" + bytes(7) + b"not json at all!")
    assert main(["train", "--epochs", "1", "--out", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"deepconv train: resume: {bad}: not a safetensors file")
    assert not any("Traceback" in line for line in err)


@pytest.mark.slow
def test_cli_default_run_reaches_98_percent_on_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert main(["train", "--out", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["val_top1_error"] <= 0.02
