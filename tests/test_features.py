"""Features, nearest neighbours, filter and neighbour pictures, a linear SVM
on features (deepconv.features) and the `deepconv features` command."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import deepconv
from deepconv.checkpoint import save_checkpoint
from deepconv.cli import main
from deepconv.data import ArrayDataset
from deepconv.features import (
    extract_features,
    filter_grid,
    first_conv_weight,
    linear_classifier,
    nearest_neighbours,
    neighbours_grid,
    save_png,
)
from deepconv.models import alexnet_small, digits_net, vgg_small
from PIL import Image  # the `test` extra installs Pillow and scikit-learn

SIZE = 16  # crop fed to the tiny nets
CLASSES = ("apple", "berry", "cherry")


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 3, SIZE, SIZE)).astype(np.float32)


def _vgg(num_classes=3):
    # Glorot init and zero biases: activations of both signs, so ReLU matters.
    return vgg_small("A", input_size=SIZE, num_classes=num_classes, width=4, fc_width=16,
                     init="glorot")


def _host(arr):
    return np.array(deepconv.to_numpy(arr))


def _last_linear(model):
    fc8 = model["fc8"]
    return _host(fc8.params["weight"]), _host(fc8.params["bias"])


# --- extract_features ---------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: alexnet_small(num_classes=5, input_size=SIZE, fc_width=16, split=1),
    lambda: alexnet_small(num_classes=5, input_size=SIZE, fc_width=16, split=2),
    _vgg,
], ids=["alexnet_split1", "alexnet_split2", "vgg_small"])
def test_default_features_are_what_the_last_linear_reads(make):
    model = make()
    x = _images(5)
    features = extract_features(model, x, batch_size=2)
    assert features.dtype == np.float32 and features.shape == (5, 16)  # fc7's width
    assert model.training  # evaluation mode only meanwhile
    model.eval()
    logits = _host(model.forward(x))
    weight, bias = _last_linear(model)
    np.testing.assert_allclose(features @ weight.T + bias, logits, rtol=1e-4, atol=1e-4)


def test_named_layer_before_a_fused_relu_is_not_rectified():
    model = _vgg()
    x = _images(4, seed=1)
    model.eval()
    before = _host(model.forward(x))
    fc7 = extract_features(model, x, layer="fc7")
    relu7 = extract_features(model, x, layer="relu7")
    assert fc7.min() < 0 < fc7.max()  # the Linear's own output, not the fused ReLU's
    np.testing.assert_array_equal(relu7, np.maximum(fc7, 0))
    np.testing.assert_array_equal(_host(model.forward(x)), before)  # fusion restored
    pool1 = extract_features(model, x, layer="pool1")
    assert pool1.shape == (4, 4 * (SIZE // 2) ** 2)


def test_graph_node_before_a_fused_relu_is_not_rectified():
    model = alexnet_small(num_classes=5, input_size=SIZE, fc_width=16, split=2)
    x = _images(4, seed=1)
    model.eval()
    before = _host(model.forward(x))
    conv3a = extract_features(model, x, layer="conv3a")  # conv3: zero biases, both signs
    relu3a = extract_features(model, x, layer="relu3a")
    assert conv3a.min() < 0 < conv3a.max()
    np.testing.assert_array_equal(relu3a, np.maximum(conv3a, 0))
    assert model.output_handles == (("fc8", 0),)  # the graph's output restored
    np.testing.assert_array_equal(_host(model.forward(x)), before)


def test_graph_node_and_input_kinds_agree():
    model = alexnet_small(num_classes=5, input_size=SIZE, fc_width=16, split=2)
    x = _images(5, seed=2)
    from_array = extract_features(model, x, layer="fc6a")
    assert from_array.shape == (5, 8)  # one column's half of fc6
    from_list = extract_features(model, list(x), layer="fc6a", batch_size=3)
    from_dataset = extract_features(model, ArrayDataset(x, np.zeros(5, np.int64)), layer="fc6a")
    np.testing.assert_allclose(from_list, from_array, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(from_dataset, from_array, rtol=1e-5, atol=1e-5)


def test_extract_features_errors():
    model = _vgg()
    with pytest.raises(ValueError, match=r"layer: the model has no layer named 'fc9'.*fc7"):
        extract_features(model, _images(1), layer="fc9")
    with pytest.raises(ValueError, match=r"images_or_dataset: expected an \(N, C, H, W\) array"):
        extract_features(model, _images(1)[0])
    with pytest.raises(ValueError, match="images_or_dataset: expected images"):
        extract_features(model, [_images(1)[0], _images(1)[0][:, :8]])
    with pytest.raises(TypeError, match="images_or_dataset: expected"):
        extract_features(model, 3)
    with pytest.raises(TypeError, match="model: expected a deepconv.nn.Sequential or Graph"):
        extract_features(model["conv1_1"], _images(1))
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1"):
        extract_features(model, _images(1), batch_size=0)


# --- nearest neighbours --------------------------------------------------------------------


def test_nearest_neighbours_match_brute_force_and_find_copies():
    rng = np.random.default_rng(3)
    # Far from the origin: |q|^2 + |t|^2 - 2 q.t alone would lose ~1e-5 to cancellation.
    train = rng.normal(size=(40, 7)) + 3e4
    query = np.concatenate([train[[5, 17]], rng.normal(size=(3, 7)) + 3e4])
    indices, distances = nearest_neighbours(query, train, k=4)
    assert indices.shape == distances.shape == (5, 4) and indices.dtype == np.int64
    assert indices[0, 0] == 5 and indices[1, 0] == 17
    assert distances[0, 0] == 0.0 and distances[1, 0] == 0.0  # exactly
    brute = np.sqrt(((query[:, None, :].astype(np.float64) - train[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(indices, np.argsort(brute, axis=1, kind="stable")[:, :4])
    np.testing.assert_allclose(distances, np.sort(brute, axis=1)[:, :4], rtol=1e-12)


def test_nearest_neighbours_break_ties_by_index():
    train = np.array([[1.0, 0], [0, 1.0], [1.0, 0], [-1.0, 0], [0, 1.0]])
    indices, distances = nearest_neighbours(np.zeros((1, 2)), train, k=5)
    np.testing.assert_array_equal(indices, [[0, 1, 2, 3, 4]])  # all at distance 1
    indices, _ = nearest_neighbours([[0.9, 0.1]], train, k=3)
    np.testing.assert_array_equal(indices, [[0, 2, 1]])


def test_nearest_neighbours_errors():
    train = np.zeros((3, 2))
    with pytest.raises(ValueError, match="k: expected at most the 3 training rows, got 4"):
        nearest_neighbours(train, train, k=4)
    with pytest.raises(ValueError, match="query_features: expected 2 features per row"):
        nearest_neighbours(np.zeros((1, 3)), train, k=1)
    with pytest.raises(ValueError, match="train_features: expected finite values"):
        nearest_neighbours(train, np.full((3, 2), np.nan), k=1)
    with pytest.raises(ValueError, match=r"query_features: expected a non-empty \(N, D\) array"):
        nearest_neighbours(np.zeros(2), train, k=1)


# --- pictures ------------------------------------------------------------------------------


def test_neighbours_grid_layout():
    queries, train = _images(2, seed=4), _images(6, seed=5)
    indices = np.array([[3, 0, 5], [1, 1, 2]])
    grid = neighbours_grid(queries, list(train), indices, gap=2)
    assert grid.dtype == np.uint8
    assert grid.shape == (2 * SIZE + 3 * 2, 4 * SIZE + 5 * 2, 3)  # rows = queries, k+1 columns

    def tile(row, column):
        top, left = 2 + row * (SIZE + 2), 2 + column * (SIZE + 2)
        return grid[top:top + SIZE, left:left + SIZE].transpose(2, 0, 1)

    np.testing.assert_array_equal(tile(0, 0), queries[0].round())
    np.testing.assert_array_equal(tile(0, 1), train[3].round())
    np.testing.assert_array_equal(tile(1, 3), train[2].round())
    assert (grid[:2] == 255).all() and (grid[:, -2:] == 255).all()  # white border
    grey = neighbours_grid(queries[:1, :1], train[:, :1], [[4]], gap=0)
    assert grey.shape == (SIZE, 2 * SIZE, 3)
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])


def test_neighbours_grid_errors():
    queries, train = _images(2), _images(3)
    with pytest.raises(ValueError, match=r"indices: expected shape \(2, k\)"):
        neighbours_grid(queries, train, [[0, 1]])
    with pytest.raises(ValueError, match=r"indices: expected values in \[0, 3\)"):
        neighbours_grid(queries, train, [[0], [3]])
    with pytest.raises(ValueError, match=r"query_images\[0\]: expected an image \(C, H, W\) "
                                         r"with C = 1 or 3"):
        neighbours_grid(queries[:, :2], train, [[0], [1]])
    with pytest.raises(ValueError, match="train_images: expected every image 16x16"):
        neighbours_grid(queries, train[:, :, :8], [[0], [1]])


def test_filter_grid_rgb_and_grey_first_layers():
    alex = alexnet_small(num_classes=5, input_size=SIZE, fc_width=16, split=1)
    weight = first_conv_weight(alex)
    assert weight.shape == (6, 3, 5, 5)
    grid = filter_grid(weight)  # 3 columns x 2 rows of 5x5 filters enlarged 7x (35 px)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 35 + 3, 3 * 35 + 4, 3)
    first = grid[1:36, 1:36]
    assert first.min() == 0 and first.max() == 255  # each filter spans black to white
    expected = (weight[0] - weight[0].min()) * 255 / np.ptp(weight[0])
    np.testing.assert_array_equal(first[::7, ::7].transpose(2, 0, 1), expected.round())

    grey = first_conv_weight(digits_net(in_channels=1, width=5))
    assert grey.shape == (5, 1, 3, 3)
    grid = filter_grid(grey, columns=5, scale=2, gap=0)
    assert grid.shape == (6, 30, 3)
    np.testing.assert_array_equal(grid[..., 0], grid[..., 1])

    columns = alexnet_small(num_classes=5, input_size=SIZE, fc_width=16, split=2)
    both = first_conv_weight(columns)  # conv1a's filters, then conv1b's
    np.testing.assert_array_equal(both, np.concatenate([_host(columns["conv1a"].params["weight"]),
                                                        _host(columns["conv1b"].params["weight"])]))
    assert filter_grid(np.zeros((2, 3, 4, 4)), scale=1)[1:5, 1:5].tolist() == [[[128] * 3] * 4] * 4


def test_filter_grid_errors():
    with pytest.raises(ValueError,
                       match=r"conv_weight: expected \(K, C, R, S\) filters with C = 1 or 3"):
        filter_grid(np.zeros((4, 2, 3, 3)))
    with pytest.raises(ValueError, match="conv_weight: expected finite values"):
        filter_grid(np.full((1, 3, 3, 3), np.inf))
    with pytest.raises(ValueError, match="columns: expected an int >= 1"):
        filter_grid(np.zeros((4, 3, 3, 3)), columns=0)


def test_save_png_round_trip(tmp_path):
    picture = np.random.default_rng(6).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    save_png(path, picture)
    with Image.open(path) as img:
        assert img.format == "PNG"
        np.testing.assert_array_equal(np.asarray(img), picture)
    assert os.listdir(tmp_path) == ["x.png"]  # no temporary file left behind
    with pytest.raises(TypeError, match="image: expected uint8"):
        save_png(path, picture.astype(np.float32))
    with pytest.raises(ValueError, match=r"image: expected \(H, W, 3\) or \(H, W\)"):
        save_png(path, picture[..., :2])


# --- linear classifier ---------------------------------------------------------------------


def test_linear_classifier_separates_separable_features():
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(4, 32)) * 5
    labels = np.repeat(np.arange(4), 30)
    features = centres[labels] + rng.normal(size=(120, 32))
    train, test = np.arange(120) % 3 != 0, np.arange(120) % 3 == 0
    accuracy, classifier = linear_classifier(features[train], labels[train], features[test],
                                             labels[test], C=1.0)
    assert accuracy == 1.0
    assert classifier.coef_.shape == (4, 32)
    shuffled, _ = linear_classifier(features[train], rng.permutation(labels[train]),
                                    features[test], labels[test])
    assert shuffled < 0.6  # chance is 0.25: the score measures something
    with pytest.raises(ValueError, match="train_labels: expected at least two classes"):
        linear_classifier(features, np.zeros(120, np.int64), features, labels)
    with pytest.raises(ValueError, match="test_features: expected 32 features per row"):
        linear_classifier(features, labels, features[:, :3], labels)
    with pytest.raises(ValueError, match=r"test_labels: expected shape \(120,\)"):
        linear_classifier(features, labels, features, labels[:5])
    with pytest.raises(ValueError, match="C: expected a finite value > 0.0"):
        linear_classifier(features, labels, features, labels, C=0)


# --- the command -----------------------------------------------------------------------------


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Three classes x three 20x24 photos (noise around a class colour), a
    query folder with a byte-for-byte copy of one training photo and a new
    one, an SVM test folder, and a checkpoint of a tiny VGG."""
    root = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(8)
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]])
    for c, name in enumerate(CLASSES):
        for i in range(5):
            noise = rng.normal(0, 40, (20, 24, 3))
            photo = np.clip(colours[c] + noise, 0, 255).astype(np.uint8)
            split = "train" if i < 3 else "test"
            _write_png(root / split / name / f"{i}.png", photo)
    (root / "query" / "any").mkdir(parents=True)
    shutil.copy(root / "train" / "berry" / "1.png", root / "query" / "any" / "copy.png")
    new = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)  # portrait: rescaled differently
    _write_png(root / "query" / "any" / "new.png", new)
    save_checkpoint(root / "vgg.safetensors", _vgg(num_classes=7))  # 7: not the data's 3 classes
    return root


def _features_args(root, *extra):
    return ["features", "--model", "vgg_small", "--model-arg", "width=4", "--model-arg",
            "fc_width=16", "--checkpoint", str(root / "vgg.safetensors"),
            "--data", str(root / "train"), "--crop-size", str(SIZE), "--scale", str(SIZE), *extra]


def test_command_end_to_end(workdir, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ)
    # The installed package must win over a source checkout on the path.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(deepconv.__file__).resolve().parent.parent)]
        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    result = subprocess.run(
        [sys.executable, "-m", "deepconv"] + _features_args(
            workdir, "--query", str(workdir / "query"), "--k", "3", "--out", str(out),
            "--svm-test", str(workdir / "test"), "--batch-size", "4"),
        capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), timeout=300)
    assert result.returncode == 0, result.stderr
    features, labels = np.load(out / "features.npy"), np.load(out / "labels.npy")
    assert features.shape == (9, 16) and features.dtype == np.float32
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], 3))
    assert json.loads((out / "classes.json").read_text()) == {n: i for i, n in enumerate(CLASSES)}

    with Image.open(out / "neighbours.png") as img:  # 2 queries x (1 + 3) tiles of 16 px
        assert (img.mode, img.size) == ("RGB", (4 * SIZE + 5 * 2, 2 * SIZE + 3 * 2))
    listing = json.loads((out / "neighbours.json").read_text())
    assert [Path(q["query"]).name for q in listing] == ["copy.png", "new.png"]
    nearest = listing[0]["neighbours"]
    assert Path(nearest[0]["image"]).parts[-2:] == ("berry", "1.png")  # its own training copy
    assert nearest[0]["distance"] <= 1e-4 * nearest[1]["distance"]
    assert nearest[1]["distance"] > 0
    assert np.load(out / "query_features.npy").shape == (2, 16)

    with Image.open(out / "filters.png") as img:  # conv1_1: 4 filters 3x3 -> 2 x 2 tiles of 33 px
        assert img.size == (2 * 33 + 3, 2 * 33 + 3)
    svm = json.loads((out / "svm.json").read_text())
    assert svm["test_images"] == 6 and svm["train_images"] == 9
    assert f"LinearSVC accuracy {100 * svm['accuracy']:.2f} % on 6 images" in result.stdout
    assert svm["accuracy"] >= 0.5  # class colours are easy; chance is 1/3
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


@pytest.mark.parametrize("extra, message", [
    (["--k", "0"], "--k: expected an int >= 1, got 0"),
    (["--k", "20"], "--k: expected at most the 9 --data images, got 20"),
    (["--scale", "8"], "--scale: expected >= --crop-size (16), got 8"),
    (["--mean", "1,2"], "--mean: expected R,G,B (three numbers), a data.json written "
                        "by deepconv train, or one of 'train', 'none', got '1,2'"),
    (["--layer", "fc9"], "--layer: layer: the model has no layer named 'fc9'"),
    (["--model-arg", "fc_width=32"], "--checkpoint: "),
    (["--model-arg", "nonsense"], "--model-arg: expected KEY=VALUE"),
    (["--svm-test", "/nonexistent/dir"], "--svm-test: root: expected a directory"),
], ids=["k0", "k_too_big", "scale", "mean", "layer", "checkpoint_mismatch", "model_arg", "svm_dir"])
def test_command_errors(workdir, tmp_path, capsys, extra, message):
    query = [] if extra[0] == "--svm-test" else ["--query", str(workdir / "query")]
    status = main(_features_args(workdir, "--out", str(tmp_path), "--mean", "none", *query, *extra))
    err = capsys.readouterr().err
    assert status == 2
    assert f"deepconv features: {message}" in err


def test_command_errors_on_data(workdir, tmp_path, capsys):
    args = _features_args(workdir, "--out", str(tmp_path))
    data = args.index("--data") + 1
    args[data] = str(tmp_path / "missing")
    assert main(args) == 2
    assert "deepconv features: --data: root: expected a directory" in capsys.readouterr().err
    (tmp_path / "empty" / "class").mkdir(parents=True)
    args[data] = str(tmp_path / "empty")
    assert main(args) == 2
    assert "--data: no .jpg / .jpeg / .png images" in capsys.readouterr().err
