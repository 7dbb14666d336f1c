"""deepconv.data.ImageFolder on folders of PNG / JPEG files written here with
Pillow: layout, class index, bad files, per-sample determinism."""

import json
import os

import numpy as np
import pytest

PIL_Image = pytest.importorskip("PIL.Image")

from deepconv.data import DataLoader  # noqa: E402
from deepconv.data.folder import (  # noqa: E402
    ImageFolder,
    ImageLoadError,
    load_image,
    read_class_index,
    write_class_index,
)
from deepconv.data.transforms import Compose, RandomCrop, RandomHorizontalFlip, Rescale  # noqa: E402

CLASSES = ["cat", "dog", "eel"]


def _write(path, rng, size=(20, 14), mode="RGB"):
    h, w = size
    pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    image = PIL_Image.fromarray(pixels, "RGB").convert(mode)
    image.save(path)
    return pixels


@pytest.fixture
def clean_tree(tmp_path):
    """root/<class>/ with two PNGs and one JPEG per class (sizes differ)."""
    rng = np.random.default_rng(7)
    root = tmp_path / "train"
    pixels = {}
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        pixels[f"{name}/a.png"] = _write(root / name / "a.png", rng, (16 + c, 12))
        pixels[f"{name}/b.PNG"] = _write(root / name / "b.PNG", rng, (12, 18), mode="L")
        _write(root / name / "c.JPEG", rng, (24, 20))
    (root / "dog" / "notes.txt").write_text("not an image, and not named like one")
    (root / "README").write_text("a file beside the class folders")
    return root, pixels


@pytest.fixture
def bad_tree(clean_tree):
    """clean_tree plus a truncated JPEG and a text file named like a PNG."""
    root, _ = clean_tree
    full = (root / "cat" / "c.JPEG").read_bytes()
    (root / "dog" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "eel" / "fake.png").write_bytes(b"this is text, not a PNG\n")
    return root


def test_layout_classes_and_samples(clean_tree):
    root, pixels = clean_tree
    data = ImageFolder(root)
    assert data.classes == CLASSES
    assert data.class_to_idx == {"cat": 0, "dog": 1, "eel": 2}
    assert len(data) == 9 and data.num_classes == 3
    names = [os.path.relpath(p, root).replace(os.sep, "/") for p, _ in data.samples]
    assert names == [f"{c}/{f}" for c in CLASSES for f in ("a.png", "b.PNG", "c.JPEG")]
    np.testing.assert_array_equal(data.labels, np.repeat([0, 1, 2], 3))
    image, label = data[3]  # dog/a.png, RGB
    assert label == 1 and image.dtype == np.float32 and image.shape == (3, 17, 12)
    np.testing.assert_array_equal(image, pixels["dog/a.png"].transpose(2, 0, 1))
    grey, _ = data[1]  # cat/b.PNG, saved as greyscale: converted to RGB
    assert grey.shape == (3, 12, 18)
    np.testing.assert_array_equal(grey[0], grey[1])
    assert "3 classes" in repr(data)


def test_class_index_round_trip_and_fixed_order(clean_tree, tmp_path):
    root, _ = clean_tree
    path = tmp_path / "classes.json"
    ImageFolder(root).save_class_index(path)
    assert json.loads(path.read_text()) == {"cat": 0, "dog": 1, "eel": 2}
    assert read_class_index(path) == CLASSES
    # A validation folder with a subset of the classes keeps the training indices.
    write_class_index(path, ["eel", "dog", "cat", "fox"])
    val = tmp_path / "val"
    (val / "dog").mkdir(parents=True)
    _write(val / "dog" / "x.png", np.random.default_rng(1))
    data = ImageFolder(val, class_index=path)
    assert data.classes == ["eel", "dog", "cat", "fox"] and data[0][1] == 1


def test_class_index_errors(clean_tree, tmp_path):
    root, _ = clean_tree
    path = tmp_path / "classes.json"
    write_class_index(path, ["cat", "dog"])
    with pytest.raises(ValueError, match=r"class_index.*\['eel'\]"):
        ImageFolder(root, class_index=path)
    path.write_text(json.dumps({"cat": 0, "dog": 2}))
    with pytest.raises(ValueError, match="indices 0 .. 1"):
        read_class_index(path)
    with pytest.raises(ValueError, match="distinct"):
        write_class_index(path, ["a", "a"])


def test_bad_files_raise_with_their_path(bad_tree):
    with pytest.raises(ImageLoadError, match="truncated.jpg") as info:
        ImageFolder(bad_tree)  # verify=True, on_error="raise": the first bad file in order
    assert info.value.path.endswith(os.path.join("dog", "truncated.jpg"))
    with pytest.raises(ImageLoadError, match="fake.png"):
        load_image(bad_tree / "eel" / "fake.png")


def test_bad_files_skipped_with_one_warning_listing_them(bad_tree):
    with pytest.warns(RuntimeWarning, match="skipped 2") as record:
        data = ImageFolder(bad_tree, on_error="skip")
    text = str(record[0].message)
    assert "truncated.jpg" in text and "fake.png" in text
    assert len(data) == 9 and len(data.skipped) == 2
    assert not any("truncated" in p or "fake" in p for p, _ in data.samples)


def test_unverified_bad_files_found_when_loaded(bad_tree):
    data = ImageFolder(bad_tree, verify=False, transform=Compose(Rescale(12), RandomCrop(12)))
    assert len(data) == 11
    bad = next(i for i, (p, _) in enumerate(data.samples) if p.endswith("truncated.jpg"))
    with pytest.raises(ImageLoadError, match="truncated.jpg"):
        data[bad]
    skipping = ImageFolder(bad_tree, verify=False, on_error="skip",
                           transform=Compose(Rescale(12), RandomCrop(12)))
    with pytest.warns(RuntimeWarning, match="truncated.jpg"):
        x, y = skipping.batch([bad - 1, bad, bad + 1])
    assert x.shape == (2, 3, 12, 12) and y.shape == (2,)
    assert len(skipping) == 11  # indices keep their meaning during an epoch


def test_transform_is_deterministic_per_seed_epoch_and_index(clean_tree):
    root, _ = clean_tree
    aug = Compose(Rescale(14), RandomCrop(10), RandomHorizontalFlip())
    a, b = ImageFolder(root, aug, seed=3), ImageFolder(root, aug, seed=3)
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i][0], b[i][0])
    other = ImageFolder(root, aug, seed=4)
    assert any(not np.array_equal(a[i][0], other[i][0]) for i in range(len(a)))
    first = [a[i][0].copy() for i in range(len(a))]
    a.set_epoch(1)
    assert any(not np.array_equal(first[i], a[i][0]) for i in range(len(a)))
    # Through the loader, with and without worker threads: the same batches.
    plain = [x for x, _ in DataLoader(b, batch_size=4, shuffle=True, seed=1)]
    threaded = [x for x, _ in DataLoader(b, batch_size=4, shuffle=True, seed=1, num_workers=2)]
    for x, z in zip(plain, threaded):
        assert x.shape[1:] == (3, 10, 10)
        np.testing.assert_array_equal(x, z)


def test_batch_needs_one_shape(clean_tree):
    root, _ = clean_tree
    with pytest.raises(ValueError, match="one shape"):
        ImageFolder(root).batch([0, 1])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(on_error="ignore"), ValueError, "on_error"),
    (dict(transform=3), TypeError, "transform"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_argument_errors(clean_tree, kwargs, error, match):
    root, _ = clean_tree
    with pytest.raises(error, match=match):
        ImageFolder(root, **kwargs)


def test_root_errors(tmp_path):
    with pytest.raises(ValueError, match="root: expected a directory"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolder(tmp_path)


def test_skimage_photos(tmp_path):
    """Real photographs (scikit-image's bundled ones), saved as JPEG and PNG."""
    data_mod = pytest.importorskip("skimage.data")
    root = tmp_path / "photos"
    for name in ("astronaut", "chelsea", "coffee"):
        (root / name).mkdir(parents=True)
        pixels = getattr(data_mod, name)()[:, :, :3]
        PIL_Image.fromarray(pixels).save(root / name / "0.jpg", quality=90)
        PIL_Image.fromarray(pixels).save(root / name / "1.png")
    data = ImageFolder(root, Compose(Rescale(64), RandomCrop(56)))
    x, y = data.batch(range(len(data)))
    assert x.shape == (6, 3, 56, 56) and list(y) == [0, 0, 1, 1, 2, 2]
    lossless = load_image(root / "chelsea" / "1.png")
    np.testing.assert_array_equal(lossless, data_mod.chelsea().transpose(2, 0, 1))


def test_missing_pillow_is_a_clear_error(clean_tree, monkeypatch):
    import sys

    root, _ = clean_tree
    monkeypatch.setitem(sys.modules, "PIL", None)  # "import PIL" now fails
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    data = ImageFolder(root, verify=False)  # scanning the layout needs no Pillow
    with pytest.raises(ImportError, match=r"needs Pillow.*deepconv\[data\]"):
        data[0]
