"""DataLoader: deterministic batches of a dataset, optionally assembled ahead
by background threads."""

from __future__ import annotations

import numbers
import queue
import threading

import numpy as np

__all__ = ["DataLoader", "epoch_order", "random_shift"]

_POLL_S = 0.05  # how often a blocked worker looks at the stop flag


def epoch_order(size: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The sample order of one epoch: ``arange(size)``, or when shuffling a
    permutation drawn from ``numpy.random.default_rng([seed, epoch])``.
    A pure function of its arguments, so a run resumed at any epoch sees
    the same order as one that never stopped."""
    if not shuffle:
        return np.arange(size, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(size).astype(np.int64)


def random_shift(max_shift=1):
    """A training transform for :class:`DataLoader`: shifts each image by
    up to ``max_shift`` pixels in each direction (uniform, independent per
    image), filling the uncovered border with zeros (the mean of
    mean-subtracted data)."""
    max_shift = _int(max_shift, "max_shift", 0)

    def shift(x, y, rng):
        if max_shift == 0:
            return x, y
        s = max_shift
        padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)))
        h, w = x.shape[2], x.shape[3]
        offsets = rng.integers(0, 2 * s + 1, size=(x.shape[0], 2))
        out = np.empty_like(x)
        for i, (dy, dx) in enumerate(offsets):
            out[i] = padded[i, :, dy:dy + h, dx:dx + w]
        return out, y

    shift.__name__ = f"random_shift({max_shift})"
    return shift


class DataLoader:
    """Batches ``(x, y)`` of numpy arrays from ``dataset``.

    ``dataset``: an :class:`~deepconv.data.ArrayDataset`, or anything with
    ``len()`` and either ``batch(indices) -> (x, y)`` or ``dataset[i] ->
    (image, label)``. The order of epoch ``e`` is
    :func:`epoch_order` ``(len(dataset), seed, e, shuffle)``, cut into
    ``batch_size`` pieces (the last one smaller unless ``drop_last``).

    Each ``iter(loader)`` is one epoch: the one numbered ``loader.epoch``,
    which then advances by one (:meth:`set_epoch` picks it explicitly;
    ``state_dict()`` / ``load_state_dict()`` save and restore it with the
    seed). ``transform(x, y, rng) -> (x, y)`` (e.g. :func:`random_shift`)
    is applied to every batch with ``rng = numpy.random.default_rng([seed,
    epoch, batch index])``, so its randomness is as repeatable as the
    order. ``num_workers`` > 0 threads assemble up to ``prefetch`` batches
    each ahead of the consumer (numpy's gathers release the GIL); batch
    ``k`` always comes from worker ``k % num_workers`` and is handed out in
    order, so the batches are the same with any number of workers.
    """

    def __init__(self, dataset, batch_size, shuffle=False, seed=0, drop_last=False,
                 num_workers=0, prefetch=2, transform=None):
        if not hasattr(dataset, "__len__"):
            raise TypeError(f"dataset: expected a sized dataset, got {type(dataset).__name__}")
        if not (hasattr(dataset, "batch") or hasattr(dataset, "__getitem__")):
            raise TypeError("dataset: expected batch(indices) or __getitem__(i)")
        self.dataset = dataset
        self.batch_size = _int(batch_size, "batch_size", 1)
        self.shuffle = _bool(shuffle, "shuffle")
        self.seed = _int(seed, "seed", 0)
        self.drop_last = _bool(drop_last, "drop_last")
        self.num_workers = _int(num_workers, "num_workers", 0)
        self.prefetch = _int(prefetch, "prefetch", 1)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform: expected a callable or None, got {type(transform).__name__}")
        self.transform = transform
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch):
        """The epoch the next ``iter(loader)`` yields."""
        self.epoch = _int(epoch, "epoch", 0)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict):
        self.seed = _int(state["seed"], "state['seed']", 0)
        self.set_epoch(state["epoch"])

    def batches(self, epoch) -> list:
        """The index arrays of every batch of ``epoch``, in order."""
        order = epoch_order(len(self.dataset), self.seed, epoch, self.shuffle)
        cuts = range(0, len(self) * self.batch_size, self.batch_size)
        return [order[i:i + self.batch_size] for i in cuts]

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        if hasattr(self.dataset, "set_epoch"):
            # Datasets that augment per sample (ImageFolder) draw from
            # (seed, epoch, index): tell them which epoch this is.
            self.dataset.set_epoch(epoch)
        plan = self.batches(epoch)
        jobs = [(epoch, k, idx) for k, idx in enumerate(plan)]
        if self.num_workers == 0:
            return (self._make(job) for job in jobs)
        return self._threaded(jobs)

    def _make(self, job):
        epoch, k, indices = job
        if hasattr(self.dataset, "batch"):
            x, y = self.dataset.batch(indices)
        else:
            pairs = [self.dataset[int(i)] for i in indices]
            x = np.stack([np.asarray(p[0]) for p in pairs])
            y = np.asarray([p[1] for p in pairs], dtype=np.int64)
        if self.transform is not None:
            x, y = self.transform(x, y, np.random.default_rng([self.seed, epoch, k]))
        return x, y

    def _threaded(self, jobs):
        workers = min(self.num_workers, max(len(jobs), 1))
        queues = [queue.Queue(maxsize=self.prefetch) for _ in range(workers)]
        stop = threading.Event()

        def work(w):
            for k in range(w, len(jobs), workers):
                try:
                    item = (True, self._make(jobs[k]))
                except BaseException as exc:  # handed to the consumer, re-raised there
                    item = (False, exc)
                while not stop.is_set():
                    try:
                        queues[w].put(item, timeout=_POLL_S)
                        break
                    except queue.Full:
                        continue
                if stop.is_set() or not item[0]:
                    return

        threads = [threading.Thread(target=work, args=(w,), daemon=True,
                                    name=f"deepconv-loader-{w}") for w in range(workers)]
        for t in threads:
            t.start()
        return self._drain(len(jobs), queues, stop, threads)

    @staticmethod
    def _drain(count, queues, stop, threads):
        try:
            for k in range(count):
                ok, value = queues[k % len(queues)].get()
                if not ok:
                    raise value
                yield value
        finally:
            stop.set()  # an early break or an error: let the workers go
            for t in threads:
                t.join()

    def __repr__(self) -> str:
        return (f"DataLoader({getattr(self.dataset, 'name', type(self.dataset).__name__)!r}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, seed={self.seed}, "
                f"drop_last={self.drop_last}, num_workers={self.num_workers})")


def _int(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def _bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)
