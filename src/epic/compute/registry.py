"""Which backend runs a queue's steps."""

from functools import cache

from epic.catalog.models import Backend, Queue
from epic.compute.base import ComputeBackend
from epic.compute.local import LocalBackend
from epic.compute.slurm import SlurmBackend


@cache
def _local_backend(queue_code: str, cores: int) -> LocalBackend:
    """One local backend per queue, so that its children are tracked in one place."""
    return LocalBackend(cores=cores)


@cache
def _slurm_backend(queue_code: str, partition: str, cores_per_node: int) -> SlurmBackend:
    """One Slurm backend per queue, so that one squeue per pass covers all its steps."""
    return SlurmBackend(partition=partition, cores_per_node=cores_per_node)


def backend_for(queue: Queue) -> ComputeBackend:
    """The backend of the queue's cluster."""
    if queue.cluster.backend == Backend.LOCAL:
        return _local_backend(queue.queue_code, queue.total_cores)
    if queue.cluster.backend == Backend.SLURM:
        return _slurm_backend(queue.queue_code, queue.partition, queue.cores_per_node)
    raise NotImplementedError(f"No compute backend for {queue.cluster.backend} clusters yet.")
