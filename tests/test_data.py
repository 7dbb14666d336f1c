"""deepconv.data: ArrayDataset, the digits set, DataLoader determinism."""

import sys

import numpy as np
import pytest

from deepconv.data import ArrayDataset, DataLoader, digits, digits_split, epoch_order, random_shift


def _dataset(n=23, classes=3):
    images = np.arange(n * 4, dtype=np.float32).reshape(n, 1, 2, 2)
    return ArrayDataset(images, np.arange(n) % classes)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return [(x.copy(), y.copy()) for x, y in loader]


def _same(a, b):
    return len(a) == len(b) and all(
        np.array_equal(xa, xb) and np.array_equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_array_dataset_holds_float32_nchw_and_int64():
    data = ArrayDataset(np.zeros((5, 3, 4, 4), np.float64), [0, 1, 2, 1, 0])
    assert data.images.dtype == np.float32 and data.labels.dtype == np.int64
    assert len(data) == 5 and data.image_shape == (3, 4, 4) and data.num_classes == 3
    x, y = data.batch([4, 0])
    assert x.shape == (2, 3, 4, 4) and list(y) == [0, 0]


@pytest.mark.parametrize("images, labels, error, message", [
    (np.zeros((2, 4, 4)), [0, 1], ValueError, "images: expected 4 dimensions"),
    (np.zeros((2, 1, 4, 4)), [0], ValueError, "labels: expected shape"),
    (np.zeros((2, 1, 4, 4)), [0.5, 1.0], TypeError, "labels: expected integers"),
    (np.zeros((2, 1, 4, 4)), [0, -1], ValueError, "labels: expected values"),
])
def test_array_dataset_rejects_bad_input(images, labels, error, message):
    with pytest.raises(error, match=message):
        ArrayDataset(images, labels)


def test_each_epoch_covers_every_sample_once_in_a_seeded_order():
    data = _dataset()
    loader = DataLoader(data, 5, shuffle=True, seed=7)
    assert len(loader) == 5
    batches = _epoch(loader, 0)
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    seen = np.concatenate([x[:, 0, 0, 0] for x, _ in batches]) / 4
    assert sorted(seen.astype(int)) == list(range(23))
    assert _same(batches, _epoch(DataLoader(data, 5, shuffle=True, seed=7), 0))
    assert not _same(batches, _epoch(loader, 1))
    assert not _same(batches, _epoch(DataLoader(data, 5, shuffle=True, seed=8), 0))
    np.testing.assert_array_equal(loader.batches(3)[0], epoch_order(23, 7, 3)[:5])


def test_iterating_advances_the_epoch_and_state_restores_it():
    loader = DataLoader(_dataset(), 4, shuffle=True, seed=1)
    first, second = list(loader), list(loader)
    assert loader.epoch == 2 and not _same(first, second)
    other = DataLoader(_dataset(), 4, shuffle=True, seed=99)
    other.load_state_dict({"seed": 1, "epoch": 1})
    assert _same(list(other), second)


def test_unshuffled_order_and_drop_last():
    loader = DataLoader(_dataset(), 5, drop_last=True)
    assert len(loader) == 4
    ys = np.concatenate([y for _, y in loader])
    np.testing.assert_array_equal(ys, np.arange(20) % 3)


@pytest.mark.parametrize("workers", [1, 3])
def test_worker_threads_give_the_same_batches(workers):
    data = _dataset(41)
    plain = DataLoader(data, 4, shuffle=True, seed=3, transform=random_shift(1))
    threaded = DataLoader(data, 4, shuffle=True, seed=3, transform=random_shift(1),
                          num_workers=workers, prefetch=1)
    for epoch in (0, 5):
        assert _same(_epoch(plain, epoch), _epoch(threaded, epoch))


def test_early_break_and_worker_errors_do_not_hang():
    class Broken(ArrayDataset):
        def batch(self, indices):
            if 7 in indices:
                raise RuntimeError("bad sample 7")
            return super().batch(indices)

    loader = DataLoader(_dataset(40), 2, num_workers=2, prefetch=1)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    data = _dataset(40)
    broken = DataLoader(Broken(data.images, data.labels), 2, num_workers=2)
    with pytest.raises(RuntimeError, match="bad sample 7"):
        list(broken)


def test_random_shift_moves_whole_images_by_at_most_one_pixel():
    x = np.zeros((50, 1, 5, 5), np.float32)
    x[:, 0, 2, 2] = 1
    y = np.zeros(50, np.int64)
    out, _ = random_shift(1)(x, y, np.random.default_rng(0))
    rows, cols = np.nonzero(out[:, 0].sum(axis=0))
    assert out.sum() == 50 and set(rows) <= {1, 2, 3} and set(cols) <= {1, 2, 3}
    assert len(set(zip(rows, cols))) > 1


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(batch_size=0), ValueError, "batch_size: expected an int >= 1"),
    (dict(batch_size=2.0), TypeError, "batch_size: expected an int"),
    (dict(batch_size=2, shuffle=1), TypeError, "shuffle: expected a bool"),
    (dict(batch_size=2, num_workers=-1), ValueError, "num_workers"),
    (dict(batch_size=2, transform=3), TypeError, "transform: expected a callable"),
])
def test_loader_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        DataLoader(_dataset(), **kwargs)


def test_digits_split_is_stratified_and_fixed_by_seed():
    labels = np.repeat(np.arange(10), 20)
    train, test = digits_split(labels, seed=0)
    assert len(test) == 40 and np.array_equal(np.bincount(labels[test]), [4] * 10)
    assert not set(train) & set(test) and len(train) + len(test) == 200
    np.testing.assert_array_equal(test, digits_split(labels, seed=0)[1])
    assert not np.array_equal(test, digits_split(labels, seed=1)[1])


def test_digits():
    pytest.importorskip("sklearn")
    train, test = digits("train"), digits("test")
    assert (len(train), len(test)) == (1442, 355)
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == np.float32
    assert train.num_classes == test.num_classes == 10
    np.testing.assert_allclose(train.images.mean(axis=0), 0, atol=1e-6)
    assert train.images.max() <= 1 and train.images.min() >= -1
    np.testing.assert_array_equal(test.images, digits("test").images)
    with pytest.raises(ValueError, match="split: expected 'train' or 'test'"):
        digits("val")


def test_digits_without_scikit_learn_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match="needs scikit-learn.*pip install"):
        digits("train")
