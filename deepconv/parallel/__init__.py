"""Splitting training across devices: data parallelism in one process
(:class:`DataParallel`, over emulated or CUDA devices) and closed-form
communication counts for data parallel and hybrid (conv data parallel, FC
model parallel) schemes (:func:`communication_cost`)."""

from deepconv.parallel.data_parallel import DataParallel, data_parallel_step_bytes, shard_sizes
from deepconv.parallel.placement import CommunicationCost, communication_cost, split_parameters

__all__ = ["CommunicationCost", "DataParallel", "communication_cost", "data_parallel_step_bytes",
           "shard_sizes", "split_parameters"]
