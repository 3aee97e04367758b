"""Workers sharing a database share the jobs: each job has one worker, until its lease lapses."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from epic.jobs.models import Job, JobStep, WorkerProcess
from epic.jobs.states import JobState, StepState
from epic.worker import leases
from epic.worker.loop import Worker
from epic.worker.staging import case_dir, job_dir
from tests.helpers import finished, run_until

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = timedelta(seconds=60)


def worker_named(name: str) -> Worker:
    """A worker that stages inline, under a name of its own."""
    return Worker(staging_threads=0, name=name)


def test_a_job_is_looked_after_by_the_worker_that_claimed_it(submit_script):
    first, second = worker_named("first"), worker_named("second")
    job_id = submit_script("case", "echo ran >> trail\n")

    first.run_once()
    for _ in range(5):
        second.run_once()
    run_until(first, finished(job_id))

    job = Job.objects.get(pk=job_id)
    assert (job.worker, job.state) == ("first", JobState.COMPLETE)


def test_a_worker_takes_over_the_jobs_of_one_whose_lease_lapsed(submit_script):
    first, second = worker_named("first"), worker_named("second")
    job_id = submit_script("case", "echo ran\n")
    first.run_once()
    Job.objects.filter(pk=job_id).update(lease_expires=timezone.now() - timedelta(seconds=1))

    run_until(second, finished(job_id))

    job = Job.objects.get(pk=job_id)
    assert (job.worker, job.state) == ("second", JobState.COMPLETE)
    assert JobStep.objects.get(job_id=job_id).state == StepState.COMPLETE


def test_leases_are_renewed_while_the_worker_runs(submit_script):
    worker = worker_named("first")
    job_id = submit_script("case", "sleep 5\n")
    worker.run_once()
    Job.objects.filter(pk=job_id).update(lease_expires=timezone.now() + timedelta(seconds=1))

    worker._renewed_at -= LEASE
    worker.run_once()

    assert Job.objects.get(pk=job_id).lease_expires > timezone.now() + timedelta(seconds=30)


def test_a_job_taken_over_during_stage_in_is_staged_again(submit_script):
    job_id = submit_script("case", "echo ran\n")
    Job.objects.filter(pk=job_id).update(
        state=JobState.STAGING_IN,
        worker="gone",
        lease_expires=timezone.now() - timedelta(seconds=1),
    )

    assert leases.claim("second", LEASE) == 1

    job = Job.objects.get(pk=job_id)
    assert (job.worker, job.state) == ("second", JobState.PENDING)


def test_a_restarted_worker_redoes_its_own_interrupted_stage_in(submit_script):
    job_id = submit_script("case", "echo ran\n")
    Job.objects.filter(pk=job_id).update(
        state=JobState.STAGING_IN, worker="first", lease_expires=timezone.now() + LEASE
    )

    restarted = worker_named("first")
    restarted.recover()
    run_until(restarted, finished(job_id))

    assert Job.objects.get(pk=job_id).state == JobState.COMPLETE


def test_finished_jobs_are_never_claimed(submit_script):
    job_id = submit_script("case", "echo ran\n")
    run_until(worker_named("first"), finished(job_id))
    Job.objects.filter(pk=job_id).update(lease_expires=timezone.now() - LEASE)

    assert leases.claim("second", LEASE) == 0
    assert Job.objects.get(pk=job_id).worker == "first"


def test_a_name_in_use_by_a_live_worker_is_refused():
    alive = subprocess.Popen(["sleep", "30"])
    try:
        WorkerProcess.objects.create(
            name="busy", host=socket.gethostname(), pid=alive.pid, heartbeat=timezone.now()
        )

        with pytest.raises(leases.DuplicateWorkerError, match="busy"):
            leases.register("busy", LEASE)
    finally:
        alive.kill()
        alive.wait()


def test_the_name_of_a_worker_whose_process_is_gone_is_taken_over():
    gone = subprocess.Popen(["true"])
    gone.wait()
    WorkerProcess.objects.create(
        name="restarted", host=socket.gethostname(), pid=gone.pid, heartbeat=timezone.now()
    )

    leases.register("restarted", LEASE)

    assert WorkerProcess.objects.get(name="restarted").pid == os.getpid()


def test_a_worker_elsewhere_is_taken_for_dead_once_not_seen_for_a_lease():
    WorkerProcess.objects.create(
        name="remote", host="another-host", pid=1, heartbeat=timezone.now() - 2 * LEASE
    )
    WorkerProcess.objects.create(
        name="remote-alive", host="another-host", pid=1, heartbeat=timezone.now()
    )

    leases.register("remote", LEASE)
    with pytest.raises(leases.DuplicateWorkerError):
        leases.register("remote-alive", LEASE)


def test_a_worker_that_lost_a_job_during_stage_in_drops_its_copy(submit_script):
    job_id = submit_script("case", "echo ran > out.txt\n")
    stale, current = worker_named("stale"), worker_named("current")
    stale.hold_jobs()
    Job.objects.filter(pk=job_id).update(state=JobState.STAGING_IN)
    job = Job.objects.select_related("array", "submitted_by", "queue__cluster").get(pk=job_id)
    # Its lease lapsed while it copied: another worker took the job over and ran it.
    Job.objects.filter(pk=job_id).update(worker="current")
    Job.objects.filter(pk=job_id).update(state=JobState.PENDING)
    run_until(current, finished(job_id))
    results = sorted(path.name for path in case_dir(job_id).iterdir())

    stale._stage_in(job)

    assert sorted(path.name for path in case_dir(job_id).iterdir()) == results
    assert "out.txt" in results
    assert not list(job_dir(job_id).glob("case.staging-*"))
    assert Job.objects.get(pk=job_id).state == JobState.COMPLETE
