"""One rank of the multi-process runs of tests/test_distributed.py, started
by mpiexec (``python mpi_worker.py MODE [OUT [EPOCHS [resume]]]``). Also imported by the test
itself, which runs the same training in one process for comparison.

Modes:
  fit       data-parallel fit (dropout, plateau schedule) on this rank's shard
  fail      rank 1 raises while rank 0 waits for it in a collective
  mismatch  the ranks build models of different shapes
"""

import sys

import numpy as np

from deepconv.data import ArrayDataset, DataLoader
from deepconv.nn import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential
from deepconv.optim import SGD, ReduceOnPlateau
from deepconv.train import fit

EPOCHS = 3  # the plateau schedule lowers the lr after the third
BATCH = 10  # 48 examples: batches of 10, 10, 10, 10, 8; uneven shards over 3 ranks


def dataset(n, seed):
    """Noise with random labels of four classes: what is compared is bits,
    not learning (and a validation error that stalls makes the plateau
    schedule act on the metric rank 0 broadcasts)."""
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.standard_normal((n, 1, 8, 8)).astype(np.float32),
                        rng.integers(0, 4, n))


def model(width=4, device="emu:0"):
    return Sequential(("conv", Conv2d(1, width, 3, padding=1, weight_init="glorot",
                                      input_grad=False, device=device)),
                      ReLU(), MaxPool2d(2, 2), Flatten(), ("drop", Dropout(0.3, seed=5)),
                      ("fc", Linear(16 * width, 4, weight_init="glorot", device=device))
                      ).reset_parameters(0)


def train(strategy_for, out, shard=None, epochs=EPOCHS, resume=False, lr=0.05):
    """fit() with ``strategy_for(model)`` as its strategy, on emu:0."""
    net = model()
    strategy = strategy_for(net)
    opt = SGD(net, lr, momentum=0.9, weight_decay=5e-4)
    schedule = ReduceOnPlateau(opt, patience=0)
    train_loader = DataLoader(dataset(48, 0), BATCH, shuffle=True, seed=3, shard=shard)
    val_loader = DataLoader(dataset(16, 1), 16)
    return fit(net, opt, train_loader, val_loader, epochs, "emu:0", out, schedule=schedule,
               resume=resume, strategy=strategy)


def main(mode, out=".", epochs=EPOCHS, resume=False):
    from deepconv.parallel import DistributedDataParallel, mpi_world, run_or_abort

    comm = mpi_world()
    rank, size = comm.Get_rank(), comm.Get_size()

    def work():
        if mode == "fit":
            train(lambda net: DistributedDataParallel(net, comm), out, shard=(rank, size),
                  epochs=epochs, resume=resume)
        elif mode == "fail":
            if rank == 1:
                raise ValueError("a failure on rank 1 only")
            comm.Barrier()  # would wait forever without the abort
        elif mode == "mismatch":
            DistributedDataParallel(model(width=4 + rank), comm)
        else:
            raise ValueError(f"mode: expected fit, fail or mismatch, got {mode!r}")

    run_or_abort(comm, work, prog="mpi_worker")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], *args[1:2], *[int(e) for e in args[2:3]], *[a == "resume" for a in args[3:4]])
