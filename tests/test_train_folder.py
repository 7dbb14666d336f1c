"""`deepconv train --data DIR` on a folder of images written here (train/
and val/, one sub-folder per class), then `deepconv eval` of what it wrote:
the centre-crop error `eval` prints must be the validation error `train`
logged, since both preprocess the same way (data.json carries the mean)."""

import json
import os

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from deepconv.cli import main  # noqa: E402
from deepconv.data.folder import read_class_index  # noqa: E402
from deepconv.data.pipeline import DATA_INFO, folder_sets, read_data_info  # noqa: E402
from deepconv.data.transforms import mean_rgb  # noqa: E402
from test_cli import COMMANDS, run  # noqa: E402  (subprocess, cwd outside the repo)

CLASSES = ("blue", "green", "red")  # the class is the dominant colour channel
MODEL = ["--model", "vgg_small", "--model-arg", "width=4", "--model-arg", "fc_width=16",
         "--model-arg", "dropout=0.0"]


def _write_split(root, rng, per_class):
    for c, name in enumerate(CLASSES):
        os.makedirs(root / name)
        channel = 2 - c  # blue is channel 2 of RGB
        for i in range(per_class):
            h, w = rng.integers(18, 25, size=2)
            pixels = rng.integers(0, 90, size=(h, w, 3))
            pixels[:, :, channel] += 140
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(7)
    _write_split(root / "train", rng, per_class=8)
    _write_split(root / "val", rng, per_class=4)
    return root


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run(COMMANDS["module"], "train", "--data", str(folder), *MODEL, "--crop-size", "16",
                 "--scale", "16,20", "--pca-color", "--epochs", "8", "--batch-size", "6",
                 "--lr", "0.005", "--lr-step", "0", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_on_a_folder_writes_what_eval_needs(folder, trained):
    out, result = trained
    assert "deepconv train: vgg_small on " in result.stderr
    assert "(24 train, 12 test images)" in result.stderr
    for name in ("checkpoint.safetensors", "best.safetensors", "log.jsonl", DATA_INFO,
                 "classes.json"):
        assert (out / name).is_file(), name
    info = read_data_info(out / DATA_INFO)
    assert info["classes"] == list(CLASSES) == read_class_index(out / "classes.json")
    assert info["crop_size"] == 16 and info["scale"] == [16, 20] and info["val_scale"] == 18
    assert info["pca_color"] is True
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    assert rows[-1]["val_top1_error"] < 0.5  # colours are easy; chance is 2/3 wrong


def test_eval_of_the_trained_checkpoint_matches_its_validation_error(folder, trained, capsys):
    out, _ = trained
    final = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    status = main(["eval", *MODEL, "--checkpoint", str(out / "checkpoint.safetensors"),
                   "--data", str(folder / "val"), "--class-index", str(out / "classes.json"),
                   "--mean", str(out / DATA_INFO), "--crop-size", "16", "--scales", "18",
                   "--protocol", "center", "--k", "2", "--json"])
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["results"]
    assert report["mean"] == pytest.approx(read_data_info(out / DATA_INFO)["mean_rgb"])
    assert report["std"] is None
    assert row["images"] == 12
    assert row["top1_error"] == pytest.approx(final["val_top1_error"])


def test_folder_sets_statistics_and_augmentation(folder):
    sets = folder_sets(folder, crop_size=16, scale=(18,), seed=3)
    assert sets.image_shape == (3, 16, 16)
    assert len(sets.train) == 24 and len(sets.val) == 12
    # Every training image is in the statistics sample (fewer than its size):
    # the mean is that of the centre crops at the validation scale.
    plain = folder_sets(folder, crop_size=16, scale=(18,))
    plain.train.transform = plain.val.transform.transforms[0]  # rescale + centre crop only
    expected = mean_rgb([plain.train[i][0] for i in range(len(plain.train))])
    assert np.allclose(sets.info["mean_rgb"], expected)
    # Augmentation: a function of (seed, epoch, index), fresh every epoch.
    first, again = sets.train[5][0], sets.train[5][0]
    assert np.array_equal(first, again)
    sets.train.set_epoch(1)
    assert not np.array_equal(first, sets.train[5][0])
    # Validation: deterministic, mean-subtracted centre crops.
    val = sets.val[0][0]
    assert val.shape == (3, 16, 16) and abs(float(val.mean())) < 60


def test_standardized_training_is_evaluated_the_same_way(folder, tmp_path, capsys):
    """--standardize: data.json carries the std, and eval divides by it too
    (its centre-crop error is again train's validation error)."""
    out = tmp_path / "run"
    assert main(["train", "--data", str(folder), *MODEL[:-2], "--model-arg", 'init="glorot"',
                 "--crop-size", "16", "--scale", "18", "--standardize", "--epochs", "4",
                 "--batch-size", "6", "--lr", "0.02", "--lr-step", "0", "--out", str(out)]) == 0
    info = read_data_info(out / DATA_INFO)
    assert info["std_rgb"] is not None and min(info["std_rgb"]) > 10  # 0..255 pixels
    final = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    capsys.readouterr()
    assert main(["eval", *MODEL[:-2], "--model-arg", 'init="glorot"', "--checkpoint",
                 str(out / "checkpoint.safetensors"), "--data", str(folder / "val"),
                 "--mean", str(out / DATA_INFO), "--crop-size", "16", "--scales", "18",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["std"] == pytest.approx(info["std_rgb"])
    assert report["results"][0]["top1_error"] == pytest.approx(final["val_top1_error"])
    assert final["val_top1_error"] < 0.5


@pytest.mark.parametrize("args, message", [
    (["--data", "/nonexistent/folder"], "--data: expected digits or a folder holding train/ and "
     "val/, got '/nonexistent/folder' (no such folder)"),
    (["--scale", "12"], "--scale: expected sizes >= crop_size (16), got [12]"),
    (["--scale", "20,18"], "--scale: expected Smin < Smax, got [20, 18]"),
    (["--scale", "big"], "--scale: expected S or SMIN,SMAX (integers), got 'big'"),
    (["--crop-size", "0"], "--crop-size: expected an int >= 1, got 0"),
])
def test_folder_options_are_checked(folder, tmp_path, capsys, args, message):
    argv = ["train", "--data", str(folder), *MODEL, "--crop-size", "16", "--epochs", "1",
            "--out", str(tmp_path / "out")]
    for i in range(0, len(args), 2):  # replace an option already there, or add it
        if args[i] in argv:
            argv[argv.index(args[i]) + 1] = args[i + 1]
        else:
            argv += args[i:i + 2]
    assert main(argv) == 2
    assert f"deepconv train: {message}" in capsys.readouterr().err


def test_a_folder_without_val_is_refused(tmp_path, capsys):
    _write_split(tmp_path / "train", np.random.default_rng(0), per_class=1)
    assert main(["train", "--data", str(tmp_path), *MODEL, "--crop-size", "16", "--scale", "18",
                 "--out", str(tmp_path / "out")]) == 2
    assert "--data: expected " + str(tmp_path / "val") in capsys.readouterr().err
