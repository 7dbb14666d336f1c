"""DataLoader: deterministic batches of a dataset, optionally assembled ahead
by background threads, into reused (page-locked on CUDA) host buffers."""

from __future__ import annotations

import numbers
import queue
import threading

import numpy as np

from deepconv.backend import cuda_available, empty
from deepconv.parallel.data_parallel import shard_sizes

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

    ``shard=(rank, size)``: for data-parallel training across ``size``
    processes, each iteration yields only part ``rank`` of every batch: its
    contiguous piece as :func:`~deepconv.parallel.shard_sizes` cuts it
    (the first ``batch % size`` pieces one example longer), exactly the
    piece :class:`~deepconv.parallel.DataParallel` gives device ``rank``.
    Only that piece is assembled. The order is the same function of
    (seed, epoch) on every rank; ``len(loader)`` still counts global
    batches. A ``transform`` then sees the piece, with ``rng =
    default_rng([seed, epoch, batch index, size, rank])`` (with ``size`` 1
    as unsharded), so a random batch transform draws differently from an
    unsharded run; per-example augmentation keyed by the example index
    (:class:`~deepconv.data.ImageFolder`) does not.

    ``pin_memory=True``: batches are assembled into a small ring of host
    buffers that are reused from epoch to epoch instead of new arrays:
    page-locked (``cupy.cuda.alloc_pinned_memory``, so copies to a GPU can
    run asynchronously) when a CUDA device is available, 64-byte aligned
    otherwise. Batch ``k`` stays valid until the loader yields batch ``k +
    2`` (counting on into the next epoch; after a ``break`` out of an
    epoch, until the next ``iter()``): copy what must live longer. Datasets
    holding ``images`` and ``labels`` arrays (:class:`ArrayDataset`) are
    gathered straight into the buffers; other batches, and a transform's
    output, are copied in.
    """

    def __init__(self, dataset, batch_size, shuffle=False, seed=0, drop_last=False,
                 num_workers=0, prefetch=2, transform=None, shard=None, pin_memory=False):
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
        self.shard = _shard(shard)
        self.pin_memory = _bool(pin_memory, "pin_memory")
        self._ring = None  # made on the first pinned iteration (it needs num_workers)
        self._ring_next = 0  # ring position of the next epoch's first batch
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
        jobs = [(epoch, k, self.part(idx)) for k, idx in enumerate(plan)]
        if self.pin_memory:
            if self._ring is None:
                self._ring = _HostRing(_ring_slots(self.num_workers, self.prefetch))
            # Positions run on across epochs, so that the contract "valid
            # until batch k + 2 is yielded" also holds over an epoch's end.
            start, self._ring_next = self._ring_next, self._ring_next + len(jobs)
            jobs = [job + (start + job[1],) for job in jobs]
        if self.num_workers == 0:
            return (self._make(job) for job in jobs)
        return self._threaded(jobs)

    def part(self, indices):
        """This loader's shard of one batch's ``indices`` (all of them when
        not sharded)."""
        if self.shard is None:
            return indices
        rank, size = self.shard
        sizes = shard_sizes(len(indices), size)
        start = sum(sizes[:rank])
        return indices[start:start + sizes[rank]]

    def _make(self, job):
        epoch, k, indices = job[:3]
        slot = self._ring.slot(job[3]) if self.pin_memory else None
        x, y = self._gather(indices, slot if self.transform is None else None)
        if self.transform is not None:
            key = [self.seed, epoch, k]
            if self.shard is not None and self.shard[1] > 1:
                # size too: numpy's seeding ignores trailing zeros, so a bare
                # rank 0 would draw exactly what the whole batch draws.
                key += [self.shard[1], self.shard[0]]
            x, y = self.transform(x, y, np.random.default_rng(key))
            if slot is not None:
                x, y = slot.hold("x", x), slot.hold("y", y)
        return x, y

    def _gather(self, indices, slot):
        """The examples ``indices`` as ``(x, y)``: new arrays, or views of
        ``slot``'s buffers when one is given."""
        data = self.dataset
        if slot is not None and _is_array_pair(data):
            n = len(indices)
            x = slot.view("x", (n,) + data.images.shape[1:], data.images.dtype)
            y = slot.view("y", (n,), data.labels.dtype)
            # mode="clip": with the default "raise", numpy gathers into a
            # temporary first; the indices are in range (a permutation of
            # len(dataset), checked equal to the arrays' length).
            np.take(data.images, indices, axis=0, out=x, mode="clip")
            np.take(data.labels, indices, out=y, mode="clip")
            return x, y
        if hasattr(data, "batch"):
            x, y = data.batch(indices)
        else:
            pairs = [data[int(i)] for i in indices]
            x = np.stack([np.asarray(p[0]) for p in pairs])
            y = np.asarray([p[1] for p in pairs], dtype=np.int64)
        if slot is not None:
            x, y = slot.hold("x", x), slot.hold("y", y)
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
                f"drop_last={self.drop_last}, num_workers={self.num_workers}"
                + (f", shard={self.shard}" if self.shard is not None else "") + ")")


def _int(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def _ring_slots(num_workers, prefetch) -> int:
    """Buffers a pinned loader needs so that batch k survives until batch
    k + 2 is yielded: while the consumer holds batch c, each of W workers
    may have ``prefetch`` batches queued and one more in assembly, all
    numbered at most c + W (prefetch + 1); with no workers, only batch c + 1
    is ever assembled."""
    return 2 if num_workers == 0 else num_workers * (prefetch + 1) + 2


def _is_array_pair(dataset) -> bool:
    """Whether ``dataset`` is its ``images`` and ``labels`` arrays (as
    :class:`ArrayDataset`), so that batches can be gathered from them."""
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    return (isinstance(images, np.ndarray) and isinstance(labels, np.ndarray)
            and images.ndim >= 1 and len(dataset) == images.shape[0] == labels.shape[0])


class _HostRing:
    """Reused host buffers for a pinned loader: slot ``p % len`` holds the
    batch at ring position ``p``."""

    def __init__(self, slots):
        self.pinned = cuda_available()
        self.slots = [_HostSlot(self.pinned) for _ in range(slots)]

    def slot(self, position):
        return self.slots[position % len(self.slots)]


class _HostSlot:
    """Named byte buffers, grown (never shrunk) as batches need."""

    def __init__(self, pinned):
        self.pinned = pinned
        self.buffers = {}

    def view(self, name, shape, dtype):
        """An array of ``shape`` and ``dtype`` over buffer ``name``."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        raw = self.buffers.get(name)
        if raw is None or raw.nbytes < nbytes:
            raw = self.buffers[name] = _host_bytes(nbytes, self.pinned)
        return raw[:nbytes].view(dtype).reshape(shape)

    def hold(self, name, arr):
        """``arr`` copied into buffer ``name``."""
        arr = np.asarray(arr)
        out = self.view(name, arr.shape, arr.dtype)
        out[...] = arr
        return out


def _host_bytes(nbytes, pinned) -> np.ndarray:
    """``nbytes`` of host memory: page-locked through cupy, or 64-byte aligned."""
    if pinned:
        import cupy

        return np.frombuffer(cupy.cuda.alloc_pinned_memory(max(nbytes, 1)), np.uint8, nbytes)
    return empty((nbytes,), np.uint8, "emu:0")


def _shard(value):
    """``None`` or a ``(rank, size)`` pair with ``0 <= rank < size``."""
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"shard: expected None or a (rank, size) pair, got {value!r}")
    rank, size = _int(value[0], "shard[0] (rank)", 0), _int(value[1], "shard[1] (size)", 1)
    if rank >= size:
        raise ValueError(f"shard: expected 0 <= rank < size, got rank {rank}, size {size}")
    return rank, size


def _bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)
