"""The worker runs jobs on this machine: staging, steps, limits, cancellation, restarts."""

from __future__ import annotations

import os
import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from epic.data.paths import user_prefix
from epic.data.services import object_store
from epic.jobs.models import Job, JobStep
from epic.jobs.states import JobState, StepState
from epic.worker.loop import Worker
from tests.helpers import finished, run_until

pytestmark = pytest.mark.django_db(transaction=True)


def read_object(user, key: str) -> str:
    """The content of an object in a user's data store."""
    with object_store().open(user_prefix(user) + key) as stream:
        return stream.read().decode()


def test_script_job_runs_and_uploads_its_results(alice, submit_script, worker):
    job_id = submit_script("case", "echo hello from the job\necho result > out.txt\n")

    run_until(worker, finished(job_id))

    job = Job.objects.get(pk=job_id)
    step = job.steps.get()
    assert job.state == JobState.COMPLETE
    assert step.state == StepState.COMPLETE
    assert step.exit_code == 0
    assert step.stdout_tail == "hello from the job\n"
    assert step.start <= step.end
    assert step.local_job_id > 0
    assert read_object(alice.user, "case/out.txt") == "result\n"


def test_failing_step_fails_the_job_and_records_exit_code(alice, submit_script, worker):
    job_id = submit_script("case", "echo broken >&2\nexit 3\n", upload=("complete",))

    run_until(worker, finished(job_id))

    step = JobStep.objects.get(job_id=job_id)
    assert Job.objects.get(pk=job_id).state == JobState.FAILED
    assert step.state == StepState.FAILED
    assert step.exit_code == 3
    assert step.stderr_tail == "broken\n"


def test_results_are_not_uploaded_on_an_ending_not_asked_for(alice, submit_script, worker):
    job_id = submit_script("case", "echo x > out.txt\nexit 1\n", upload=("complete",))

    run_until(worker, finished(job_id))

    assert object_store().head(user_prefix(alice.user) + "case/out.txt") is None


def test_input_deleted_after_submission_fails_the_job_before_it_runs(alice, submit_script, worker):
    job_id = submit_script("gone", "true\n")
    object_store().delete(user_prefix(alice.user) + "gone/run.sh")

    run_until(worker, finished(job_id))

    job = Job.objects.get(pk=job_id)
    assert job.state == JobState.FAILED
    assert "epic://gone/" in job.status_reason
    assert job.steps.get().state == StepState.SKIPPED


def test_steps_never_use_more_cores_than_the_queue_has(alice, submit_script, worker):
    cores = os.cpu_count() and len(os.sched_getaffinity(0))
    job_ids = [submit_script(f"case{n}", "sleep 1\n") for n in range(cores + 1)]

    run_until(worker, lambda: JobStep.objects.filter(state=StepState.RUNNING).exists())
    worker.run_once()

    assert JobStep.objects.filter(state=StepState.RUNNING).count() == cores
    assert JobStep.objects.filter(state=StepState.QUEUED).count() == 1
    run_until(worker, lambda: all(Job.objects.get(pk=pk).finished for pk in job_ids))
    assert {job.state for job in Job.objects.all()} == {JobState.COMPLETE}


def test_cancel_stops_a_running_step(alice, submit_script, worker):
    job_id = submit_script("case", "echo started\nsleep 60\n")
    run_until(worker, lambda: JobStep.objects.get(job_id=job_id).state == StepState.RUNNING)

    assert alice.post(f"/api/v2/job/{job_id}/cancel/").status_code == 204
    run_until(worker, finished(job_id), timeout=15)

    step = JobStep.objects.get(job_id=job_id)
    assert Job.objects.get(pk=job_id).state == JobState.CANCELLED
    assert step.state == StepState.CANCELLED
    assert step.exit_code == 143


def test_cancel_before_dispatch_runs_nothing(alice, submit_script, worker):
    job_id = submit_script("case", "echo x > ran.txt\n")

    alice.post(f"/api/v2/job/{job_id}/cancel/")
    run_until(worker, finished(job_id))

    assert Job.objects.get(pk=job_id).state == JobState.CANCELLED
    assert JobStep.objects.get(job_id=job_id).start is None
    assert object_store().head(user_prefix(alice.user) + "case/ran.txt") is None


def test_step_over_its_runtime_limit_is_stopped(alice, submit_script, worker):
    job_id = submit_script("case", "sleep 60\n")
    run_until(worker, lambda: JobStep.objects.get(job_id=job_id).state == StepState.RUNNING)

    JobStep.objects.filter(job_id=job_id).update(start=timezone.now() - timedelta(hours=2))
    run_until(worker, finished(job_id), timeout=15)

    step = JobStep.objects.get(job_id=job_id)
    assert step.state == StepState.TIMED_OUT
    assert Job.objects.get(pk=job_id).state == JobState.FAILED


def test_restarted_worker_records_a_step_that_ended_meanwhile(alice, submit_script, worker):
    job_id = submit_script("case", "sleep 1\nexit 4\n")
    run_until(worker, lambda: JobStep.objects.get(job_id=job_id).state == StepState.RUNNING)

    restarted = Worker(staging_threads=0)
    restarted.recover()
    run_until(restarted, finished(job_id))

    step = JobStep.objects.get(job_id=job_id)
    assert step.state == StepState.FAILED
    assert step.exit_code == 4


def test_killed_step_is_recorded_as_failed_not_lost(alice, submit_script, worker):
    job_id = submit_script("case", "sleep 60\n")
    run_until(worker, lambda: JobStep.objects.get(job_id=job_id).state == StepState.RUNNING)

    os.killpg(JobStep.objects.get(job_id=job_id).local_job_id, signal.SIGKILL)
    run_until(worker, finished(job_id))

    step = JobStep.objects.get(job_id=job_id)
    assert step.state == StepState.FAILED
    assert "killed before it could record its exit code" in step.stderr_tail
    assert Job.objects.get(pk=job_id).state == JobState.FAILED


def test_nul_bytes_in_a_log_neither_stop_the_worker_nor_reach_the_database(
    alice, submit_script, worker
):
    poisoned = submit_script("poison", "printf 'before\\000after\\n'\n")
    healthy = submit_script("healthy", "echo fine\n")

    run_until(worker, lambda: all(Job.objects.get(pk=job).finished for job in (poisoned, healthy)))

    assert JobStep.objects.get(job_id=poisoned).stdout_tail == "beforeafter\n"
    assert Job.objects.get(pk=healthy).state == JobState.COMPLETE
