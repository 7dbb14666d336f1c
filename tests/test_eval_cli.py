"""`deepconv eval`: checkpoints of a tiny VGG-style net (never trained: a
fresh initialisation saved with save_checkpoint) evaluated on a folder of
small PNG / JPEG images written here; the printed numbers must be those of
deepconv.evaluate.evaluate() in this process."""

import json
import os

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from deepconv.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from deepconv.cli import main  # noqa: E402
from deepconv.data.folder import ImageFolder, write_class_index  # noqa: E402
from deepconv.data.transforms import SubtractMean  # noqa: E402
from deepconv.evaluate import PROTOCOLS, VIEWS_PER_SCALE, evaluate  # noqa: E402
from deepconv.models import alexnet_small, vgg_small  # noqa: E402
from test_cli import COMMANDS, run  # noqa: E402  (the subprocess helper: cwd outside the repo)

CLASSES = ("cat", "dog", "fox", "owl")
CROP = 16
MODEL_ARGS = ["--model", "vgg_small", "--model-arg", "width=4", "--model-arg", "fc_width=16"]
MEAN = (120.0, 110.0, 100.0)


def _net(seed):
    # What `--model vgg_small --model-arg width=4 --model-arg fc_width=16` builds
    # for 4 classes and --crop-size 16; Glorot keeps its scores away from 0.
    return vgg_small(input_size=CROP, num_classes=len(CLASSES), in_channels=3, width=4,
                     fc_width=16, init="glorot", seed=seed)


def _write_images(root, rng, per_class=3):
    """Smooth colour ramps (a tint per class) with noise, 18-26 px a side,
    PNG and JPEG."""
    for c, name in enumerate(CLASSES):
        os.makedirs(root / name)
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(18, 27, 2))
            ramp = np.linspace(0, 1, w)[None, :, None] * np.linspace(0.5, 1, h)[:, None, None]
            tint = np.roll([200.0, 90.0, 30.0], c)
            pixels = ramp * tint + rng.normal(0, 25, (h, w, 3)) + 20 * c
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            image.save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval_cli")
    _write_images(base / "data", np.random.default_rng(7))
    paths = []
    # Untrained nets mostly answer one class whatever the view; with these
    # seeds the protocols' errors differ on this folder, so a mix-up shows.
    for seed in (6, 4):
        paths.append(str(base / f"seed{seed}.safetensors"))
        save_checkpoint(paths[-1], _net(seed))
    return {"base": base, "data": str(base / "data"), "checkpoints": paths}


def _loaded(paths):
    models = []
    for path in paths:
        model = _net(seed=99)  # other weights until the checkpoint is loaded
        load_checkpoint(path, model)
        models.append(model)
    return models


def _eval_args(setup, *extra, checkpoints=None):
    return (["eval"] + MODEL_ARGS + ["--data", setup["data"], "--crop-size", str(CROP)]
            + [a for p in (checkpoints or setup["checkpoints"][:1]) for a in ("--checkpoint", p)]
            + list(extra))


def _table(stdout):
    """The rows of the printed table: {protocol: [cells]} (percent signs
    dropped)."""
    lines = stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["protocol", "scales", "views"]
    return {cells[0]: cells[1:] for cells in (line.replace(" %", "").split() for line in lines[1:])}


def test_eval_prints_the_errors_and_timing_of_evaluate(setup):
    """Every protocol at two scales, mean subtracted, top-2: the table the
    command prints equals evaluate() run here on the same folder."""
    result = run(COMMANDS["module"], *_eval_args(
        setup, "--scales", "16,20", "--protocol", "center,10crop", "--protocol",
        "multicrop,dense,dense+multicrop", "--mean", ",".join(map(str, MEAN)), "--k", "2"))
    assert result.returncode == 0, result.stderr
    assert "(12 images, 4 classes), 1 checkpoint, device emu:0" in result.stderr
    assert "top-2 err" in result.stdout.splitlines()[0]
    rows = _table(result.stdout)
    assert list(rows) == list(PROTOCOLS)
    model = _loaded(setup["checkpoints"][:1])
    dataset = ImageFolder(setup["data"])
    errors = set()
    for protocol, (scales, views, top1, top2, seconds, per_s) in rows.items():
        expected = evaluate(model, dataset, protocol, CROP, (16, 20), preprocess=SubtractMean(MEAN),
                            k=2)
        assert scales == "16,20"
        assert int(views) == 2 * VIEWS_PER_SCALE[protocol] == expected["views"]
        assert float(top1) == round(100 * expected["top1_error"], 2), protocol
        assert float(top2) == round(100 * expected["top2_error"], 2), protocol
        assert float(seconds) > 0 and float(per_s) > 0
        errors.add((top1, top2))
    assert len(errors) > 1  # the protocols disagree somewhere, so a mix-up would show


def test_eval_ensemble_json(setup):
    """Two checkpoints (repeated option and comma list alike) are an
    ensemble: the JSON results are evaluate() on the list of both models."""
    first, second = setup["checkpoints"]
    result = run(COMMANDS["module"], *_eval_args(
        setup, "--checkpoint", f"{second},{first}", "--scales", "20", "--protocol",
        "10crop,dense+multicrop", "--json", "--k", "3", checkpoints=[first]))
    assert result.returncode == 0, result.stderr
    assert "an ensemble of 3 checkpoints" in result.stderr
    out = json.loads(result.stdout)
    assert out["checkpoints"] == [first, second, first]
    assert (out["images"], out["classes"], out["k"], out["mean"]) == (12, 4, 3, None)
    models = _loaded([first, second, first])
    dataset = ImageFolder(setup["data"])
    for row in out["results"]:
        expected = evaluate(models, dataset, row["protocol"], CROP, (20,), k=3)
        assert row["top1_error"] == pytest.approx(expected["top1_error"], abs=1e-12)
        assert row["top3_error"] == pytest.approx(expected["top3_error"], abs=1e-12)
        assert row["views"] == VIEWS_PER_SCALE[row["protocol"]] and row["scales"] == [20]
        assert row["images"] == 12
        assert row["seconds"] > 0
        assert row["images_per_s"] == pytest.approx(12 / row["seconds"])


def test_eval_train_scale_and_class_index(setup, capsys):
    """--train-scale S tests at S-32, S, S+32; --class-index fixes the
    labels' order (here reversed, so the errors are those of that order)."""
    index = str(setup["base"] / "classes.json")
    write_class_index(index, CLASSES[::-1])
    code = main(_eval_args(setup, "--train-scale", "48", "--class-index", index, "--json"))
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    row = out["results"][0]
    assert row["protocol"] == "center" and row["scales"] == [16, 48, 80]
    expected = evaluate(_loaded(setup["checkpoints"][:1]),
                        ImageFolder(setup["data"], class_index=index), "center", CROP, (16, 48, 80))
    assert row["top1_error"] == expected["top1_error"]
    assert row["top5_error"] == expected["top5_error"]


def test_eval_bad_images(setup, tmp_path, capsys):
    data = tmp_path / "data"
    _write_images(data, np.random.default_rng(3), per_class=1)
    (data / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    args = _eval_args(setup, "--scales", "16", "--json")
    args[args.index("--data") + 1] = str(data)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--data: " in err and "broken.png: cannot decode the image" in err
    assert "--on-error skip" in err
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable image"):
        assert main(args + ["--on-error", "skip"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["images"] == 4


@pytest.fixture(scope="module")
def other_checkpoints(setup):
    """A vgg_small of another width, and a two-column AlexNet (a graph, so
    no dense evaluation), for the error cases."""
    wide = str(setup["base"] / "wide.safetensors")
    save_checkpoint(wide, vgg_small(input_size=CROP, num_classes=len(CLASSES), width=8, fc_width=16))
    split = str(setup["base"] / "split.safetensors")
    save_checkpoint(split, alexnet_small(num_classes=len(CLASSES), input_size=CROP, width=4,
                                         fc_width=16, split=2))
    os.makedirs(setup["base"] / "empty" / "cat")
    return {"wide": wide, "split": split, "empty": str(setup["base"] / "empty")}


ERRORS = {  # name: (arguments after the valid ones, the message)
    "missing checkpoint": (["--checkpoint", "nowhere.safetensors"],
                           "--checkpoint: no such file: nowhere.safetensors"),
    "checkpoint of another net": (["--checkpoint", "{wide}"],
                                  "--checkpoint: {wide}: parameter 'conv1_1.weight' is float32 "
                                  "(8, 3, 3, 3) in the file, float32 (4, 3, 3, 3) in the model (was "
                                  "it saved from --model vgg_small"),
    "not a checkpoint": (["--checkpoint", "{data}/cat/0.jpg"], "--checkpoint: {data}/cat/0.jpg: not "
                         "a safetensors file"),
    "unknown protocol": (["--protocol", "center,12crop"], "--protocol: expected one of center, "
                         "10crop, multicrop, dense, dense+multicrop, got '12crop'"),
    "empty folder": (["--data", "{empty}"], "--data: {empty} holds no readable images"),
    "no folder": (["--data", "{empty}/cat/none"], "--data: root: expected a directory"),
    "scale below the crop": (["--scales", "20,12"], "--scales: every test scale must be >= "
                             "--crop-size (16), got 20,12"),
    "scales not ints": (["--scales", "20,big"], "--scales: expected comma-separated integers, got "
                        "'20,big'"),
    "train scale below the crop": (["--train-scale", "40"], "--train-scale: every test scale must "
                                   "be >= --crop-size (16), got 8,40,72"),
    "jitter the wrong way": (["--train-scale", "64,32"], "--train-scale: train_scale: expected "
                             "Smin < Smax"),
    "mean of two": (["--mean", "1,2"], "--mean: expected R,G,B (three numbers), a "
                    "data.json written by deepconv train, or one of 'none', 'imagenet', got '1,2'"),
    "unknown model": (["--model", "resnet"], "--model: no model named 'resnet'"),
    "unknown model argument": (["--model-arg", "depth=3"], "--model vgg_small / --model-arg: "
                               "vgg_small() got an unexpected keyword argument 'depth'"),
    "missing class index": (["--class-index", "{empty}/none.json"], "--class-index: "),
    "bad device": (["--device", "emu:99"], "--device: device: 'emu:99' is out of range"),
    "k of 0": (["--k", "0"], "--k: expected an int >= 1, got 0"),
    "no dense graph": (["--model", "alexnet_small", "--model-arg", "split=2", "--checkpoint",
                        "{split}", "--protocol", "dense"],
                       "--protocol: alexnet_small cannot be evaluated densely: model: expected a "
                       "deepconv.nn.Sequential, got Graph"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_eval_errors_name_the_option(setup, other_checkpoints, capsys, case):
    """Exit status 2 and a message naming the option, before any image is
    classified."""
    names = dict(other_checkpoints, data=setup["data"])
    extra, message = ERRORS[case]
    extra = [a.format(**names) for a in extra]
    args = _eval_args(setup, "--scales", "16")
    for option in ("--data", "--model", "--checkpoint"):  # replace, not repeat, these
        if option in extra:
            at = args.index(option)
            del args[at:at + 2]
    if "--train-scale" in extra:
        args = args[:-2]
    assert main(args + extra) == 2
    captured = capsys.readouterr()
    assert message.format(**names) in captured.err
    assert captured.out == ""


def test_eval_weights_gives_the_checkpoints_results(setup, tmp_path, capsys):
    """``--weights`` with the same weights as a plain state dict (deepconv's
    names, saved by the safetensors package) prints what ``--checkpoint``
    prints; a file that does not fit is a usage error naming --weights."""
    from safetensors.numpy import save_file

    weights = tmp_path / "weights.safetensors"
    save_file({k: np.array(v) for k, v in _loaded(setup["checkpoints"][:1])[0].state_dict().items()},
              str(weights))
    base = ["eval"] + MODEL_ARGS + ["--data", setup["data"], "--crop-size", str(CROP), "--json"]
    assert main(base + ["--checkpoint", setup["checkpoints"][0]]) == 0
    by_checkpoint = json.loads(capsys.readouterr().out)["results"]
    assert main(base + ["--weights", str(weights)]) == 0
    by_weights = json.loads(capsys.readouterr().out)["results"]
    for a, b in zip(by_checkpoint, by_weights):
        assert (a["top1_error"], a["top5_error"]) == (b["top1_error"], b["top5_error"])
    narrow = tmp_path / "narrow.safetensors"
    save_file({k: np.array(v) for k, v in vgg_small(input_size=CROP, num_classes=len(CLASSES),
                                                    width=2, fc_width=16).state_dict().items()},
              str(narrow))
    assert main(base + ["--weights", str(narrow)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"deepconv eval: --weights: {narrow}: state_dict['conv1_1.weight']: "
                          "expected shape (4, 3, 3, 3), got (2, 3, 3, 3)"), err
    with pytest.raises(SystemExit) as info:  # argparse: one of the two
        main(base + ["--weights", str(weights), "--checkpoint", str(weights)])
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
