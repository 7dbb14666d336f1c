"""DataLoader(pin_memory=True): batches assembled into a ring of reused,
aligned host buffers (page-locked where CUDA is available) are the same
batches as without it, and stay valid as documented."""

import numpy as np
import pytest

import deepconv
from deepconv.data import ArrayDataset, DataLoader, random_shift
from deepconv.data.loader import _ring_slots


def _data(n=23):
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.standard_normal((n, 2, 4, 4)).astype(np.float32), np.arange(n) % 5)


class ItemDataset:
    """A dataset reached one example at a time (no ``batch``, no arrays)."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data.images[i], int(self.data.labels[i])


def _copies(loader, epochs):
    """Every batch of ``epochs`` epochs, copied as soon as it is yielded."""
    return [(x.copy(), y.copy()) for _ in range(epochs) for x, y in loader]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("kind", ["arrays", "items", "transform", "shard"])
def test_pinned_batches_equal_plain_ones(kind, workers):
    data = _data()
    options = dict(shuffle=True, seed=2, num_workers=workers, prefetch=1)
    if kind == "items":
        data = ItemDataset(data)
    elif kind == "transform":
        options["transform"] = random_shift(1)
    elif kind == "shard":
        options["shard"] = (1, 3)
    plain = _copies(DataLoader(data, 5, **options), 2)
    pinned = _copies(DataLoader(data, 5, pin_memory=True, **options), 2)
    assert len(plain) == len(pinned) == 10
    for (x, y), (xp, yp) in zip(plain, pinned):
        assert x.tobytes() == xp.tobytes() and y.tobytes() == yp.tobytes()
        assert x.dtype == xp.dtype and y.dtype == yp.dtype


@pytest.mark.parametrize("workers, prefetch", [(0, 2), (1, 1), (2, 3)])
def test_buffers_are_reused_aligned_and_valid_until_two_batches_later(workers, prefetch):
    data = _data()
    loader = DataLoader(data, 5, shuffle=True, num_workers=workers, prefetch=prefetch,
                        pin_memory=True)
    reference = _copies(DataLoader(data, 5, shuffle=True), 3)
    addresses, held = set(), []
    for k, (x, y) in enumerate(b for _ in range(3) for b in loader):
        addresses.add(x.ctypes.data)
        assert x.ctypes.data % 64 == 0 and y.ctypes.data % 64 == 0
        # The contract: the previous batch is still intact now.
        held = (held + [(k, x, y)])[-2:]
        for j, hx, hy in held:
            assert hx.tobytes() == reference[j][0].tobytes(), (k, j)
            assert hy.tobytes() == reference[j][1].tobytes(), (k, j)
    # 15 batches over 3 epochs, all in the same few buffers.
    assert len(addresses) <= _ring_slots(workers, prefetch) < 15
    assert deepconv.device_of(x) == deepconv.device("emu:0")


def test_pinned_batches_go_to_a_device_like_plain_ones():
    x, y = next(iter(DataLoader(_data(), 4, pin_memory=True)))
    moved = deepconv.asarray(x, device="emu:1")
    assert deepconv.device_of(moved) == deepconv.device("emu:1")
    assert deepconv.to_numpy(moved).tobytes() == _data().images[:4].tobytes()


def test_pin_memory_must_be_a_bool():
    with pytest.raises(TypeError, match="pin_memory: expected a bool, got str"):
        DataLoader(_data(), 4, pin_memory="yes")
