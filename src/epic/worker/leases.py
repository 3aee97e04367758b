"""Which worker looks after which job: named workers, and leases on jobs that lapse.

Several workers may share one database (PostgreSQL, scale-out). Each job is looked after by
one worker at a time: the worker named in the job's `worker` column, while its lease holds.
A worker renews the leases of its jobs on every pass; when a worker dies, its leases lapse
and the other workers take its jobs over. A worker restarted under the same name takes its
jobs back at once. Scheduler submissions are idempotent (steps are tagged), so a step that
a dead worker handed over but did not record is found again, not submitted twice.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from epic.jobs.models import Job, WorkerProcess
from epic.jobs.states import JobState

logger = logging.getLogger(__name__)

# The heartbeat of a name reserved by a worker that has not registered yet.
_NEVER = datetime(2000, 1, 1, tzinfo=UTC)
# The most jobs one worker claims in one pass.
CLAIM_BATCH = 500
UNFINISHED_JOB_STATES = (
    JobState.PENDING,
    JobState.STAGING_IN,
    JobState.RUNNING,
    JobState.STAGING_OUT,
)


class DuplicateWorkerError(RuntimeError):
    """Another live worker already uses this worker's name."""


def register(name: str, lease: timedelta) -> None:
    """Record this process as the worker called `name`; refuse if a live one has that name.

    A worker of that name on this host whose process is gone, or one elsewhere not seen for
    a lease, is taken to be dead: this process replaces it and inherits its jobs.
    """
    host, pid = socket.gethostname(), os.getpid()
    # The row exists before it is locked, so that two workers starting at once serialise.
    WorkerProcess.objects.bulk_create(
        [WorkerProcess(name=name, host=host, pid=0, heartbeat=_NEVER)], ignore_conflicts=True
    )
    with transaction.atomic():
        known = WorkerProcess.objects.select_for_update().get(name=name)
        if known.pid and _is_alive(known, host, pid, lease):
            raise DuplicateWorkerError(
                f"A worker named {name!r} already runs (pid {known.pid} on {known.host}); "
                "give each worker its own name (epic worker --name NAME)."
            )
        known.host, known.pid, known.heartbeat = host, pid, timezone.now()
        known.save()
    logger.info("Worker %r registered (pid %s on %s)", name, pid, host)


def _is_alive(known: WorkerProcess, host: str, pid: int, lease: timedelta) -> bool:
    """Whether a registered worker still runs: by its process here, by its heartbeat elsewhere."""
    if known.host != host:
        return timezone.now() - known.heartbeat < lease
    if known.pid == pid:
        return False
    return _process_runs(known.pid)


def _process_runs(pid: int) -> bool:
    """Whether a process of this host runs: it exists and is not a zombie awaiting its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


def renew(name: str, lease: timedelta) -> None:
    """Extend the leases of the worker's unfinished jobs, and its heartbeat."""
    now = timezone.now()
    Job.objects.filter(worker=name, state__in=UNFINISHED_JOB_STATES).update(
        lease_expires=now + lease
    )
    WorkerProcess.objects.filter(name=name).update(heartbeat=now)


def claim(name: str, lease: timedelta) -> int:
    """Take this worker's share of the unfinished jobs that no live worker holds.

    A job is free when no worker holds it or its worker's lease lapsed. Each live worker takes
    an equal share of the free jobs (at most CLAIM_BATCH a pass), so that workers running
    together share the work. A job taken over while its input was being copied in is staged
    again. Returns how many jobs were taken.
    """
    now = timezone.now()
    free = Job.objects.filter(state__in=UNFINISHED_JOB_STATES).filter(
        Q(worker="") | Q(lease_expires__lt=now)
    )
    share = _share(free.count(), now, lease)
    if not share:
        return 0
    with transaction.atomic():
        taken = list(
            free.select_for_update(skip_locked=True)
            .order_by("id")
            .values_list("id", "worker", "state")[:share]
        )
        ids = [job_id for job_id, _, _ in taken]
        free.filter(id__in=ids).update(worker=name, lease_expires=now + lease)

    for job_id, previous, state in taken:
        if previous and previous != name:
            logger.warning("Job %s: taken over from worker %r", job_id, previous)
        if state == JobState.STAGING_IN:
            _restage(job_id)
    return len(taken)


def _share(free: int, now, lease: timedelta) -> int:
    """How many of `free` jobs one of the live workers takes in a pass."""
    if not free:
        return 0
    live = WorkerProcess.objects.filter(heartbeat__gte=now - lease).count()
    return min(CLAIM_BATCH, -(-free // max(1, live)))


def release_interrupted_staging(name: str) -> None:
    """After a restart, put the worker's jobs whose stage-in was cut short back to pending."""
    for job_id in Job.objects.filter(worker=name, state=JobState.STAGING_IN).values_list(
        "id", flat=True
    ):
        _restage(job_id)


def _restage(job_id: int) -> None:
    """Have a job's stage-in done again from the start."""
    moved = Job.objects.filter(pk=job_id, state=JobState.STAGING_IN).update(state=JobState.PENDING)
    if moved:
        logger.warning("Job %s: stage-in was interrupted; it will be redone", job_id)


def lease_length(seconds: float) -> timedelta:
    """A lease of the given length in seconds, at least a few worker passes long."""
    return timedelta(seconds=max(2.0, seconds))
