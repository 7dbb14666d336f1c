"""Splitting training across devices: data parallelism in one process
(:class:`DataParallel`, over emulated or CUDA devices), the same across MPI
ranks (:class:`DistributedDataParallel`: MPI, or NCCL on CUDA), hybrid
parallelism (:class:`Hybrid`: conv data parallel, FC model parallel), and
closed-form communication counts for data, model and hybrid parallelism
(:func:`communication_cost`). Model parallelism itself is a placed graph
(:meth:`deepconv.nn.Graph.place`, ``alexnet(split=2, devices=...)``)."""

from deepconv.parallel.data_parallel import DataParallel, data_parallel_step_bytes, shard_sizes
from deepconv.parallel.distributed import (DistributedDataParallel, launched_world_size,
                                           mpi_world, run_or_abort)
from deepconv.parallel.hybrid import Hybrid
from deepconv.parallel.placement import (CommunicationCost, communication_cost, hybrid_step_bytes,
                                         model_parallel_bytes, split_parameters)

__all__ = ["CommunicationCost", "DataParallel", "DistributedDataParallel", "Hybrid",
           "communication_cost", "data_parallel_step_bytes", "hybrid_step_bytes",
           "launched_world_size", "model_parallel_bytes", "mpi_world", "run_or_abort",
           "shard_sizes", "split_parameters"]
