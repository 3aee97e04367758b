"""The worker runs script jobs on a Slurm queue: results, cancellation, limits and restarts."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from epic.compute.slurm.backend import job_name
from epic.jobs.models import Job, JobStep
from epic.jobs.states import ACTIVE_STEP_STATES, JobState, StepState
from epic.worker.launches import launch_for
from epic.worker.loop import Worker
from tests.helpers import finished, run_until

pytestmark = pytest.mark.django_db(transaction=True)


def running(job_id: int):
    """A predicate: the job's step runs."""
    return lambda: JobStep.objects.get(job_id=job_id).state == StepState.RUNNING


def handed_over(job_id: int):
    """A predicate: the job's step is in Slurm's hands, waiting or running."""
    return lambda: JobStep.objects.get(job_id=job_id).state in ACTIVE_STEP_STATES


def submitted(job_id: int):
    """A predicate: the job's step is in Slurm's hands, waiting."""
    return lambda: JobStep.objects.get(job_id=job_id).state == StepState.SUBMITTED


def slurm_job(job_id: int) -> tuple[str, str]:
    """The name and working folder of a Slurm job."""
    argv = [
        "squeue",
        "--noheader",
        "--states=all",
        f"--jobs={job_id}",
        "--Format=Name:|,WorkDir:|",
    ]
    printed = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    name, work_dir = printed.strip().removesuffix("|").split("|", 1)
    return name, work_dir


def test_script_job_runs_as_a_slurm_job(submit_to_slurm, worker, settings):
    job_id = submit_to_slurm("case", "echo hello from slurm\n")

    run_until(worker, finished(job_id))

    step = JobStep.objects.get(job_id=job_id)
    assert Job.objects.get(pk=job_id).state == JobState.COMPLETE
    assert (step.state, step.exit_code) == (StepState.COMPLETE, 0)
    assert step.stdout_tail == "hello from slurm\n"
    name, work_dir = slurm_job(step.local_job_id)
    assert name == job_name(step.pk)
    assert work_dir == settings.EPIC_SLURM_SCRATCH


def test_failing_script_on_slurm_fails_the_job(submit_to_slurm, worker):
    job_id = submit_to_slurm("case", "echo broken >&2\nexit 3\n")

    run_until(worker, finished(job_id))

    step = JobStep.objects.get(job_id=job_id)
    assert Job.objects.get(pk=job_id).state == JobState.FAILED
    assert (step.state, step.exit_code, step.stderr_tail) == (StepState.FAILED, 3, "broken\n")


def test_cancel_stops_a_running_slurm_step(alice, submit_to_slurm, worker):
    job_id = submit_to_slurm("case", "echo started\nsleep 60\n")
    run_until(worker, lambda: "started" in _stdout_so_far(job_id))

    assert alice.post(f"/api/v2/job/{job_id}/cancel/").status_code == 204
    run_until(worker, finished(job_id), timeout=20)

    step = JobStep.objects.get(job_id=job_id)
    assert Job.objects.get(pk=job_id).state == JobState.CANCELLED
    assert (step.state, step.exit_code) == (StepState.CANCELLED, 143)


def test_cancel_removes_a_step_still_pending_in_slurm(alice, submit_to_slurm, worker, node_shape):
    _, cpus = node_shape
    job_id = submit_to_slurm("case", "echo ran > ran.txt\n", partitions=cpus + 1)
    run_until(worker, submitted(job_id))

    assert alice.post(f"/api/v2/job/{job_id}/cancel/").status_code == 204
    run_until(worker, finished(job_id), timeout=20)

    step = JobStep.objects.get(job_id=job_id)
    assert Job.objects.get(pk=job_id).state == JobState.CANCELLED
    assert (step.state, step.exit_code) == (StepState.CANCELLED, 143)
    assert step.stdout_tail == ""


def test_slurm_step_over_its_runtime_limit_is_stopped(submit_to_slurm, worker):
    job_id = submit_to_slurm("case", "sleep 60\n")
    run_until(worker, running(job_id))

    JobStep.objects.filter(job_id=job_id).update(start=timezone.now() - timedelta(hours=2))
    run_until(worker, finished(job_id), timeout=20)

    assert JobStep.objects.get(job_id=job_id).state == StepState.TIMED_OUT
    assert Job.objects.get(pk=job_id).state == JobState.FAILED


def test_restarted_worker_records_a_slurm_step_that_ended_meanwhile(submit_to_slurm, worker):
    job_id = submit_to_slurm("case", "sleep 1\nexit 4\n")
    run_until(worker, handed_over(job_id))

    restarted = Worker(staging_threads=0)
    restarted.recover()
    run_until(restarted, finished(job_id))

    step = JobStep.objects.get(job_id=job_id)
    assert (step.state, step.exit_code) == (StepState.FAILED, 4)


def _stdout_so_far(job_id: int) -> str:
    """What the job's step has written to its stdout file so far."""
    path = launch_for(JobStep.objects.get(job_id=job_id)).step_dir / "stdout"
    return path.read_text() if path.exists() else ""
