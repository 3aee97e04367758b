"""Which backend runs a queue's steps."""

from functools import cache

from epic.catalog.models import Backend, Queue
from epic.compute.base import ComputeBackend
from epic.compute.local import LocalBackend


@cache
def _local_backend(queue_code: str, cores: int) -> LocalBackend:
    """One local backend per queue, so that its children are tracked in one place."""
    return LocalBackend(cores=cores)


def backend_for(queue: Queue) -> ComputeBackend:
    """The backend of the queue's cluster."""
    if queue.cluster.backend == Backend.LOCAL:
        return _local_backend(queue.queue_code, queue.total_cores)
    raise NotImplementedError(f"No compute backend for {queue.cluster.backend} clusters yet.")
