"""Data parallelism across processes: one MPI rank per device.

The same training as :class:`~deepconv.parallel.DataParallel`, spread over
the ranks of an MPI job (``mpiexec -n 2 deepconv train ...``) instead of
the devices of one process. Every rank builds the same model (same seed);
each step:

1. rank ``r`` takes the contiguous shard ``r`` of the global batch
   (:func:`~deepconv.parallel.shard_sizes`; the loader assembles only that
   part: ``DataLoader(..., shard=(rank, size))``) and runs forward and the
   loss on it;
2. the ranks exchange ``(n_r, loss_r)`` (one small all-gather), so each
   knows the global batch ``B`` and the global mean loss, and checks both
   the same way (an error is raised on every rank alike, never on one);
3. backward with the loss gradient scaled by ``n_r / B``;
4. the gradients, packed into one flat buffer per rank, are summed onto
   rank 0 in rank order (``g0 + g1``, then ``+ g2`` ...);
5. rank 0 runs ``optimizer.step()``; its parameters are broadcast (one
   flat buffer) into every rank's model, in place.

That is DataParallel's step operation for operation (its replicas become
ranks), so the weights are bitwise those of an in-process run over the
same number of devices. Transport: MPI (mpi4py, buffer-based calls on
numpy arrays) for emulated devices; NCCL through ``cupy.cuda.nccl`` for
CUDA devices, its unique id sent with MPI. Both move ``P (size - 1)``
values into rank 0 and ``P (size - 1)`` out per step, the counts of
:func:`~deepconv.parallel.data_parallel_step_bytes`.

Failure: an error on one rank would leave the others waiting for it
forever, so run each rank's work under :func:`run_or_abort`, which prints
the error with the rank and calls ``MPI_Abort``; a rank killed outright is
noticed by the launcher (MPICH's ``mpiexec`` ends the others at once).
While waiting for a message a rank polls and sleeps rather than spinning,
so that a waiting rank does not take a CPU core from a working one (ranks
sharing a machine with the emulator's thread pool).
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback

import numpy as np

from deepconv.backend import asarray, backend_for, device_of, empty, is_array
from deepconv.nn import Layer, SoftmaxCrossEntropy
from deepconv.nn.loss import finite_loss

__all__ = ["DistributedDataParallel", "launched_world_size", "mpi_world", "run_or_abort"]

# Variables the common launchers set in every rank: MPICH / Intel MPI
# (hydra), Open MPI, MVAPICH.
WORLD_SIZE_ENV = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_INSTALL_HINT = "pip install 'deepconv[mpi]' (mpi4py and the mpich wheel)"
_GRADIENT_TAG = 7101
_SPIN_S = 0.001   # a message that arrives within this is waited for by spinning
_SLEEP_S = 0.0005  # then the waiting rank polls at this interval
_ABORT_PAUSE_S = 0.25


def launched_world_size() -> int:
    """The number of ranks an MPI launcher started, read from its
    environment variables (:data:`WORLD_SIZE_ENV`); 1 outside a launcher."""
    for name in WORLD_SIZE_ENV:
        text = os.environ.get(name, "").strip()
        if text.isdigit():
            return int(text)
    return 1


def mpi_world():
    """``mpi4py.MPI.COMM_WORLD`` (initialising MPI); ImportError saying what
    to install when mpi4py or an MPI library is missing."""
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as exc:  # RuntimeError: mpi4py found no libmpi
        raise ImportError(f"training across processes needs mpi4py and an MPI library "
                          f"({exc}); {_INSTALL_HINT}") from None
    return MPI.COMM_WORLD


def run_or_abort(comm, work, *, prog="deepconv"):
    """``work()`` on this rank; an exception, or a non-zero int returned,
    ends the whole job with ``MPI_Abort`` (so no rank waits forever for a
    rank that stopped), after printing ``"<prog>: rank r of n: <error>"``
    (and the traceback, for an unexpected exception). Returns what
    ``work()`` returned when it is 0 or None."""
    where = f"{prog}: rank {comm.Get_rank()} of {comm.Get_size()}"
    try:
        status = work()
    except SystemExit as exc:  # sys.exit(n) inside work(): n is the status
        status = exc.code if exc.code is None or isinstance(exc.code, int) else 1
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException as exc:  # KeyboardInterrupt too: the other ranks must stop as well
        expected = isinstance(exc, (ValueError, TypeError, ImportError, OSError,
                                    FloatingPointError, KeyboardInterrupt))
        if not expected:
            traceback.print_exc(file=sys.stderr)
        text = str(exc) or type(exc).__name__
        print(f"{where}: {type(exc).__name__}: {text}; stopping every rank", file=sys.stderr)
        _abort(comm, 1)
    if status:
        print(f"{where}: exit status {status}; stopping every rank", file=sys.stderr)
        _abort(comm, int(status))
    return status


def _abort(comm, code):
    sys.stdout.flush()
    sys.stderr.flush()
    # The launcher forwards a rank's output through a pipe and tears the job
    # down on the abort; a moment's pause lets the message above through first
    # (without it, it was lost now and then on a loaded machine).
    time.sleep(_ABORT_PAUSE_S)
    comm.Abort(code)


def _wait(request):
    """Complete an MPI request: spin briefly, then poll with short sleeps."""
    spin_until = time.perf_counter() + _SPIN_S
    while not request.Test():
        if time.perf_counter() > spin_until:
            time.sleep(_SLEEP_S)


class DistributedDataParallel:
    """This rank's part of data-parallel training over an MPI communicator.

    ::

        comm = mpi_world()
        model = digits_net(seed=0, device="emu:0")   # the same on every rank
        ddp = DistributedDataParallel(model, comm)
        opt = SGD(ddp.module, lr=0.1)                  # stepped on rank 0 only
        loader = DataLoader(train_set, 32, shuffle=True, shard=(ddp.rank, ddp.size))
        for x, y in loader:                            # this rank's shard
            loss = ddp.train_step(x, y, opt)           # the global mean loss

    ``model``: a :class:`~deepconv.nn.Layer` on this rank's device, of the
    same parameter names, shapes and dtype on every rank (checked; rank 0's
    weights are then broadcast, so the ranks start equal). ``comm``: an
    mpi4py communicator (default ``MPI.COMM_WORLD``). Parameters on a CUDA
    device are exchanged with NCCL (cupy), others with MPI. The
    constructor and every step are collective: every rank must call them.
    """

    def __init__(self, model, comm=None, *, loss=SoftmaxCrossEntropy):
        if not isinstance(model, Layer):
            raise TypeError(f"model: expected a deepconv.nn.Layer, got {type(model).__name__}")
        self.comm = mpi_world() if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.module = model
        self.replicas = [model]
        self.criterion = loss()
        self.last_batch_size = 0
        params = model.parameters()
        if not params:
            raise ValueError("model: expected a model with parameters")
        self.device = device_of(params[0], arg="model")
        layout = [(name, tuple(w.shape), str(w.dtype)) for name, w in model.named_parameters()]
        dtypes = sorted({dtype for _, _, dtype in layout})
        if len(dtypes) != 1:
            raise ValueError(f"model: expected parameters of one dtype, got {dtypes}")
        layouts = self.comm.allgather(layout)  # small: names and shapes only
        for r, other in enumerate(layouts):
            if other != layouts[0]:
                raise ValueError(f"model: rank {r} built a model with different parameters "
                                 "(names, shapes or dtype) from rank 0's; build the same model "
                                 "on every rank")
        count = sum(int(np.prod(shape)) for _, shape, _ in layout)
        self._flat = empty((count,), params[0].dtype, self.device)
        self._scratch = empty((count,), params[0].dtype, self.device) if self.rank == 0 else None
        self._transport = (_NcclTransport(self.comm, self.device) if self.device.type == "cuda"
                           else _MpiTransport(self.comm))
        self.broadcast_parameters()

    def train(self, mode: bool = True):
        self.module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def forward_backward(self, x, y) -> float:
        """Forward, loss and backward on this rank's shard ``(x, y)``, the
        loss gradient scaled by ``n_r / B``; returns the global mean loss
        (the same float on every rank)."""
        for arg, a in (("x", x), ("y", y)):
            if not is_array(a) or a.ndim == 0:
                raise TypeError(f"{arg}: expected an array with a batch axis, got "
                                f"{type(a).__name__} {tuple(getattr(a, 'shape', ()))}")
        n = x.shape[0]
        if y.shape[0] != n:
            raise ValueError(f"y: expected {n} labels (one per example of x), "
                             f"got shape {tuple(y.shape)}")
        x, y = asarray(x, device=self.device), asarray(y, device=self.device)
        own = float(self.criterion.forward(self.module.forward(x), y)) if n else math.nan
        shares = np.empty((self.size, 2), np.float64)
        _wait(self.comm.Iallgather(np.array([n, own], np.float64), shares))
        sizes = [int(s) for s in shares[:, 0]]
        batch = sum(sizes)
        if min(sizes) == 0:
            empty_rank = sizes.index(0)
            raise ValueError(f"x: rank {empty_rank} of {self.size} got no examples: a global batch "
                             f"of {batch} is smaller than the number of ranks; use a batch size "
                             f"(and drop_last) that gives every rank at least one example")
        total = 0.0
        for size, loss in zip(sizes, shares[:, 1]):  # DataParallel's sum, in its order
            total += float(loss) * (size / batch)
        self.last_batch_size = batch
        self.module.backward(self.criterion.backward(n / batch))
        return total

    def reduce_gradients(self):
        """Sum every rank's gradients into rank 0's, in rank order (the
        other ranks' gradients are left as they were)."""
        grads = self.module.gradients()
        _pack(grads, self._flat, self.device)
        self._transport.sum_to_root(self._flat, self._scratch)
        if self.rank == 0:
            _unpack(self._flat, grads, self.device)

    def broadcast_parameters(self):
        """Copy rank 0's parameters into every rank's model (in place)."""
        params = self.module.parameters()
        if self.rank == 0:
            _pack(params, self._flat, self.device)
        self._transport.broadcast(self._flat)
        if self.rank != 0:
            _unpack(self._flat, params, self.device)

    def broadcast_floats(self, values) -> list:
        """Rank 0's list of floats, on every rank (``values`` is ignored on
        the others, which pass None): e.g. the validation metric a plateau
        schedule steps on, computed on rank 0 only."""
        count = np.zeros(1, np.int64)
        if self.rank == 0:
            count[0] = len(values)
        _wait(self.comm.Ibcast(count, root=0))
        buffer = (np.asarray(values, np.float64) if self.rank == 0
                  else np.empty(int(count[0]), np.float64))
        _wait(self.comm.Ibcast(buffer, root=0))
        return [float(v) for v in buffer]

    def train_step(self, x, y, optimizer) -> float:
        """One step on the global batch whose shard ``(x, y)`` this rank
        holds: :meth:`forward_backward`, :meth:`reduce_gradients`,
        ``optimizer.step()`` on rank 0, :meth:`broadcast_parameters`.
        Returns the global mean loss; FloatingPointError on every rank if
        it is not finite (before any weight changes)."""
        loss = finite_loss(self.forward_backward(x, y))
        self.reduce_gradients()
        if self.rank == 0:
            optimizer.step()
        self.broadcast_parameters()
        return loss

    def __repr__(self):
        return (f"DistributedDataParallel({type(self.module).__name__}, rank={self.rank}, "
                f"size={self.size}, device={self.device})")


def _pack(arrays, flat, dev):
    with backend_for(dev).activate(dev):
        offset = 0
        for a in arrays:
            flat[offset:offset + a.size] = a.reshape(-1)
            offset += a.size


def _unpack(flat, arrays, dev):
    with backend_for(dev).activate(dev):
        offset = 0
        for a in arrays:
            a[...] = flat[offset:offset + a.size].reshape(a.shape)
            offset += a.size


class _MpiTransport:
    """Flat numpy buffers through MPI point-to-point and broadcast."""

    def __init__(self, comm):
        self.comm = comm

    def sum_to_root(self, flat, scratch):
        if self.comm.Get_rank() != 0:
            _wait(self.comm.Isend(flat, dest=0, tag=_GRADIENT_TAG))
            return
        for source in range(1, self.comm.Get_size()):  # rank order: the sum's order is fixed
            _wait(self.comm.Irecv(scratch, source=source, tag=_GRADIENT_TAG))
            flat += scratch

    def broadcast(self, flat):
        _wait(self.comm.Ibcast(flat, root=0))


class _NcclTransport:
    """Flat cupy buffers through NCCL (send / recv to rank 0 in rank
    order, then broadcast), on the current stream of this rank's device:
    the packing before and the optimiser step after are queued on that
    stream too, so no host synchronisation is needed in between."""

    def __init__(self, comm, dev):
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError as exc:
            raise ImportError(f"training across processes on CUDA devices needs cupy with NCCL "
                              f"({exc}); pip install 'deepconv[gpu]' nvidia-nccl-cu12") from None
        self.cupy, self.nccl, self.dev = cupy, nccl, dev
        uid = nccl.get_unique_id() if comm.Get_rank() == 0 else None
        uid = comm.bcast(uid, root=0)  # the id is a few bytes; pickled by mpi4py
        with cupy.cuda.Device(dev.index):
            self.comm = nccl.NcclCommunicator(comm.Get_size(), uid, comm.Get_rank())
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def _args(self, flat):
        types = {np.dtype(np.float32): self.nccl.NCCL_FLOAT32,
                 np.dtype(np.float64): self.nccl.NCCL_FLOAT64}
        if flat.dtype not in types:
            raise TypeError(f"model: NCCL transport takes float32 or float64 parameters, "
                            f"got {flat.dtype}")
        return flat.size, types[flat.dtype], self.cupy.cuda.get_current_stream().ptr

    def sum_to_root(self, flat, scratch):
        with self.cupy.cuda.Device(self.dev.index):
            count, dtype, stream = self._args(flat)
            if self.rank != 0:
                self.comm.send(flat.data.ptr, count, dtype, 0, stream)
                return
            for source in range(1, self.size):
                self.comm.recv(scratch.data.ptr, count, dtype, source, stream)
                flat += scratch

    def broadcast(self, flat):
        with self.cupy.cuda.Device(self.dev.index):
            count, dtype, stream = self._args(flat)
            self.comm.bcast(flat.data.ptr, count, dtype, 0, stream)
