"""deepconv.checkpoint: the safetensors reader / writer, atomic saves, and
whole training states."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from deepconv.checkpoint import load_checkpoint, load_file, read_metadata, save_checkpoint, save_file
from deepconv.nn import Conv2d, Flatten, Linear, ReLU, Sequential
from deepconv.optim import SGD, StepLR


def _tensors():
    rng = np.random.default_rng(0)
    return {
        "w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
        "d": rng.standard_normal(5),
        "i": np.arange(7, dtype=np.int64),
        "u8": np.arange(3, dtype=np.uint8),
        "flag": np.array([True, False]),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
        "big_endian": np.arange(4, dtype=">i4"),
    }


def _model(seed=0):
    model = Sequential(("conv", Conv2d(1, 2, 3, padding=1, weight_init="glorot")), ReLU(),
                       Flatten(), ("fc", Linear(2 * 4 * 4, 3)))
    return model.reset_parameters(seed)


def test_round_trip(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file(_tensors(), path, {"note": "hello", "ü": "ß"})
    tensors, meta = load_file(path)
    assert meta["note"] == "hello" and meta["ü"] == "ß" and read_metadata(path) == meta
    for name, arr in _tensors().items():
        assert tensors[name].shape == arr.shape and tensors[name].dtype == arr.dtype.newbyteorder("=")
        np.testing.assert_array_equal(tensors[name], arr)
        assert tensors[name].flags.writeable
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    assert (8 + n) % 8 == 0 and header["w"]["dtype"] == "F32" and header["w"]["shape"] == [3, 2, 3, 3]
    assert header["d"]["data_offsets"][0] % 8 == 0


def test_interoperates_with_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    ours = tmp_path / "ours.safetensors"
    save_file(_tensors(), ours, {"k": "v"})
    theirs = st.load_file(str(ours))
    for name, arr in _tensors().items():
        np.testing.assert_array_equal(theirs[name], arr)
    other = tmp_path / "theirs.safetensors"
    st.save_file({"a": np.ones((2, 3), np.float32), "b": np.arange(4, dtype=np.int32)},
                 str(other), metadata={"m": "x"})
    tensors, meta = load_file(other)
    np.testing.assert_array_equal(tensors["a"], np.ones((2, 3)))
    np.testing.assert_array_equal(tensors["b"], np.arange(4))
    assert meta == {"m": "x"}


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("mangle, message", [
    (lambda raw: raw[:5], "too short"),
    (lambda raw: raw[:-3], "truncated"),
    (lambda raw: raw[:40], "truncated|header length"),
    (lambda raw: raw + b"xx", "after the last tensor"),
    (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "checksum"),
    (lambda raw: b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not a safetensors file"),
    (lambda raw: (4).to_bytes(8, "little") + b"[1] ", "not an object"),
    (lambda raw: (4).to_bytes(8, "little") + b"\xff\xfe{}", "not UTF-8 JSON"),
    (lambda raw: b"", "too short"),
])
def test_bad_files_raise_value_error_naming_the_file(tmp_path, mangle, message):
    good = tmp_path / "good.safetensors"
    save_file(_tensors(), good)
    bad = _write(tmp_path / "bad.safetensors", mangle(good.read_bytes()))
    with pytest.raises(ValueError, match=message) as info:
        load_file(bad)
    assert str(bad) in str(info.value)


def test_inconsistent_header_is_rejected(tmp_path):
    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}}).encode()
    bad = _write(tmp_path / "h.safetensors", len(header).to_bytes(8, "little") + header + bytes(12))
    with pytest.raises(ValueError, match="needs 8 bytes"):
        load_file(bad)
    header = json.dumps({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}).encode()
    bad = _write(tmp_path / "d.safetensors", len(header).to_bytes(8, "little") + header + bytes(8))
    with pytest.raises(ValueError, match="unsupported dtype 'C64'"):
        load_file(bad)


def test_a_failed_rename_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    save_file({"x": np.ones(3, np.float32)}, path)

    def crash(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        save_file({"x": np.zeros(3, np.float32)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(load_file(path)[0]["x"], np.ones(3))
    assert os.listdir(tmp_path) == ["c.safetensors"]  # the temporary file is gone


def test_sigkill_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "c.safetensors"
    save_file({"x": np.ones(1000, np.float32)}, path)
    # The child saves over it and is killed while the new file is half
    # written: its first write goes out, then it stops inside the next one.
    child = textwrap.dedent(f"""
        import time
        import numpy as np
        from deepconv import checkpoint
        real = checkpoint.atomic_write
        def slow(path, write):
            def stalled(f):
                f.write(b"partial")
                f.flush()
                print("writing", flush=True)
                time.sleep(60)
                write(f)
            real(path, stalled)
        checkpoint.atomic_write = slow
        checkpoint.save_file({{"x": np.zeros(1000, np.float32)}}, {str(path)!r})
    """)
    # cwd: not the repository root, whose source deepconv/ (no compiled
    # modules) would shadow the installed package for `python -c`.
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE,
                            env=dict(os.environ), cwd=tmp_path)
    try:
        assert proc.stdout.readline().strip() == b"writing"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    np.testing.assert_array_equal(load_file(path)[0]["x"], np.ones(1000))
    leftovers = [n for n in os.listdir(tmp_path) if n != "c.safetensors"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".c.safetensors.")


def test_training_state_round_trip(tmp_path):
    path = tmp_path / "state.safetensors"
    model = _model(1)
    opt = SGD(model, 0.1, momentum=0.9)
    sched = StepLR(opt, 2, 0.5)
    x = np.random.default_rng(0).standard_normal((4, 1, 4, 4)).astype(np.float32)
    model.forward(x)
    model.backward(np.ones((4, 3), np.float32))
    opt.step()
    sched.step()
    save_checkpoint(path, model, opt, sched, {"epoch": 3, "loader": {"seed": 1, "epoch": 3}})

    other = _model(2)
    other_opt = SGD(other, 0.5, momentum=0.0)
    other_sched = StepLR(other_opt, 2, 0.5)
    state = load_checkpoint(path, other, other_opt, other_sched)
    assert state == {"epoch": 3, "loader": {"seed": 1, "epoch": 3}}
    for (name, a), b in zip(model.named_parameters(), other.parameters()):
        assert a.tobytes() == b.tobytes(), name
    for a, b in zip(opt.velocities, other_opt.velocities):
        assert a.tobytes() == b.tobytes()
    assert (other_opt.lr, other_opt.momentum, other_opt.steps) == (opt.lr, opt.momentum, opt.steps)
    assert other_sched.state_dict() == sched.state_dict()


def test_wrong_model_or_foreign_file_is_a_clear_error(tmp_path):
    path = tmp_path / "state.safetensors"
    save_checkpoint(path, _model(), state={})
    small = Sequential(("conv", Conv2d(1, 2, 3, padding=1)))
    with pytest.raises(ValueError, match=r"do not match the model: unexpected \['fc.bias'"):
        load_checkpoint(path, small)
    wide = Sequential(("conv", Conv2d(1, 4, 3, padding=1)), ReLU(), Flatten(), ("fc", Linear(64, 3)))
    with pytest.raises(ValueError, match="parameter 'conv.weight' is float32 \\(2, 1, 3, 3\\)"):
        load_checkpoint(path, wide)
    with pytest.raises(ValueError, match="holds no optimiser state"):
        model = _model()
        load_checkpoint(path, model, SGD(model, 0.1))
    plain = tmp_path / "plain.safetensors"
    save_file({"x": np.ones(2, np.float32)}, plain)
    with pytest.raises(ValueError, match="not a deepconv checkpoint") as info:
        load_checkpoint(plain, _model())
    assert str(plain) in str(info.value)


def test_loading_leaves_the_model_untouched_when_the_file_is_bad(tmp_path):
    path = tmp_path / "state.safetensors"
    save_checkpoint(path, _model(1), state={})
    raw = path.read_bytes()
    path.write_bytes(raw[:-4])
    model = _model(2)
    before = [np.array(a) for a in model.parameters()]
    with pytest.raises(ValueError, match="truncated"):
        load_checkpoint(path, model)
    for b, a in zip(before, model.parameters()):
        np.testing.assert_array_equal(a, b)


# --- a checkpoint rejected as a whole (regressions: each failed before its fix) --------


def _trained_state(tmp_path):
    """A checkpoint of a model, optimiser and schedule after one step."""
    path = tmp_path / "state.safetensors"
    model = _model(1)
    opt = SGD(model, 0.1, momentum=0.9)
    sched = StepLR(opt, 2, 0.5)
    model.forward(np.random.default_rng(0).standard_normal((4, 1, 4, 4)).astype(np.float32))
    model.backward(np.ones((4, 3), np.float32))
    opt.step()
    sched.step()
    save_checkpoint(path, model, opt, sched, {"epoch": 1})
    return path


def _rewrite(path, edit):
    """Re-save ``path`` after ``edit(tensors, metadata)`` (a fresh checksum,
    so only the edit is wrong)."""
    tensors, meta = load_file(path)
    meta.pop("deepconv.data_sha256")
    edit(tensors, meta)
    save_file(tensors, path, meta)


def _edit_json(key, change):
    def edit(tensors, meta):
        value = json.loads(meta[key])
        change(value)
        meta[key] = json.dumps(value)
    return edit


def _velocity_as_int32(tensors, meta):
    tensors["optimizer/velocities/conv.weight"] = np.full((2, 1, 3, 3), 7, np.int32)


_BAD_SECTIONS = [
    (_velocity_as_int32, r"optimizer.*velocities.*conv\.weight.*int32"),
    (_edit_json("optimizer", lambda o: o.update(steps=1.5)), r"optimizer.*steps.*1\.5"),
    (_edit_json("optimizer", lambda o: o.update(lr="fast")), r"optimizer.*lr"),
    (_edit_json("schedule", lambda s: s.pop("base_lr")), r"schedule.*base_lr"),
    (_edit_json("schedule", lambda s: s.update(epoch=-1)), r"schedule.*epoch"),
]


@pytest.mark.parametrize("edit, message", _BAD_SECTIONS,
                         ids=["int32_velocity", "steps_1.5", "lr_str", "no_base_lr", "epoch_-1"])
def test_a_bad_optimizer_or_schedule_section_changes_nothing(tmp_path, edit, message):
    path = _trained_state(tmp_path)
    _rewrite(path, edit)
    model = _model(2)
    opt = SGD(model, 0.5, momentum=0.0)
    sched = StepLR(opt, 3, 0.1)
    weights = {name: np.array(w) for name, w in model.params.items()}
    opt_before, sched_before = opt.state_dict(), sched.state_dict()
    with pytest.raises(ValueError, match=message) as info:
        load_checkpoint(path, model, opt, sched)
    assert str(path) in str(info.value)
    for name, w in model.params.items():
        np.testing.assert_array_equal(w, weights[name])
    after = opt.state_dict()
    assert {k: v for k, v in after.items() if k != "velocities"} == \
        {k: v for k, v in opt_before.items() if k != "velocities"}
    assert all(np.all(v == 0) for v in after["velocities"].values())
    assert sched.state_dict() == sched_before


def test_a_state_that_is_not_a_dict_is_rejected(tmp_path):
    path = _trained_state(tmp_path)
    _rewrite(path, lambda tensors, meta: meta.update(state="[1, 2]"))
    with pytest.raises(ValueError, match=r"state.*expected a JSON object, got a list"):
        load_checkpoint(path, _model())


@pytest.mark.parametrize("where", ["header", "state"])
def test_deeply_nested_json_is_a_value_error(tmp_path, where):
    path = tmp_path / "deep.safetensors"
    deep = "[" * 100_000 + "]" * 100_000
    if where == "header":
        text = ('{"__metadata__": {"x": "y"}, "a": ' + deep + "}").encode()
        path.write_bytes(len(text).to_bytes(8, "little") + text)
        with pytest.raises(ValueError, match="nested too deeply") as info:
            load_file(path)
    else:
        save_checkpoint(path, _model(), state={})
        _rewrite(path, lambda tensors, meta: meta.update(state=deep))
        with pytest.raises(ValueError, match="nested too deeply") as info:
            load_checkpoint(path, _model())
    assert str(path) in str(info.value)


def test_stale_temporary_files_are_removed_at_the_next_save(tmp_path):
    path = tmp_path / "c.safetensors"
    # what a crash during a save leaves (tempfile's naming, as atomic_write's)
    stale = tmp_path / ".c.safetensors.k2j4_x9a.tmp"
    stale.write_bytes(b"partial")
    old = os.stat(stale).st_mtime - 3600
    os.utime(stale, (old, old))
    # kept: other names, and a fresh one (another process may be saving now)
    unrelated = [tmp_path / ".c.safetensors.notes", tmp_path / ".d.safetensors.k2j4_x9a.tmp",
                 tmp_path / "c.safetensors.k2j4_x9a.tmp", tmp_path / ".c.safetensors.abcdefgh.tmp"]
    for other in unrelated:
        other.write_bytes(b"keep")
    save_file({"x": np.ones(2, np.float32)}, path)
    assert not stale.exists()
    assert all(other.exists() for other in unrelated)
