"""The one place where a job moves from step to step and decides how it ended."""

from __future__ import annotations

import logging
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from epic.compute.registry import backend_for
from epic.jobs.models import Job, JobStep
from epic.jobs.states import (
    ACTIVE_STEP_STATES,
    FAILED_STEP_STATES,
    FINAL_STEP_STATES,
    JobState,
    StepState,
)
from epic.software.registry import get_driver
from epic.worker.staging import install_case

logger = logging.getLogger(__name__)

# The fields of its steps that decide how a job moves on.
DECIDING_FIELDS = ("id", "job_id", "index", "state", "run_if_previous_step_fails")
STOP_CANCEL = "cancel"
STOP_TIMEOUT = "timeout"


def cancel_unstarted_steps(job: Job) -> None:
    """Mark every step that has not started as cancelled."""
    for step in job.steps.filter(state__in=[StepState.PENDING, StepState.QUEUED]):
        step.move_to(StepState.CANCELLED, scheduler_reason="")


@transaction.atomic
def start_running(job: Job, worker: str, staged: Path) -> bool:
    """After stage-in: the staged copy becomes the case, the job runs, its first step queues.

    Only while `worker` still holds the job in stage-in: a worker whose lease lapsed meanwhile
    gets False, and its copy is not used.
    """
    # One conditional update both checks the hold and takes the row until the commit.
    now = timezone.now()
    held = Job.objects.filter(pk=job.pk, worker=worker, state=JobState.STAGING_IN)
    if not held.update(state=JobState.RUNNING, staged_in_at=now):
        return False
    install_case(job.pk, staged)
    job.state, job.staged_in_at = JobState.RUNNING, now
    if not _queue_all_steps_of_new_job(job):
        advance(job)
    return True


def _queue_all_steps_of_new_job(job: Job) -> bool:
    """Queue every step of a job that starts on a scheduler that chains its steps.

    On such a scheduler every step of a job whose steps are all pending is queued at once
    (see `advance`): one update does it. False where `advance` must decide: another kind of
    backend, a cancel request, or a step already moved on (a step cancelled before the start).
    The caller holds the job's row (start_running updated it), and a cancel or a step's move
    takes that row first, so nothing changes between the look and the update.
    """
    if not backend_for(job.queue).queues_steps:
        return False
    seen = list(
        JobStep.objects.filter(job_id=job.pk).values_list("state", "job__cancel_requested")
    )
    if not seen or any(state != StepState.PENDING or cancel for state, cancel in seen):
        return False
    JobStep.objects.filter(job_id=job.pk).update(state=StepState.QUEUED)
    return True


def fail_before_start(job: Job, reason: str) -> None:
    """End a job whose input could not be staged: no step runs, nothing is uploaded."""
    for step in job.steps.filter(state=StepState.PENDING):
        step.move_to(StepState.SKIPPED, scheduler_reason="")
    job.move_to(JobState.STAGING_OUT, outcome=JobState.FAILED, status_reason=reason[:500])
    logger.info("Job %s: failed before start: %s", job.pk, reason)


@transaction.atomic
def advance(job: Job) -> None:
    """Queue what should run next, skip what must not, or end the job when no step is left.

    Where the job's scheduler holds steps in its own queue, every step whose turn depends on
    a step still to end is queued at once: the worker hands each to the scheduler chained to
    the step before it. Elsewhere one step is queued at a time.

    The job's row is locked first, so that two moves of one job (a step's end recorded by the
    worker, a waiting step cancelled through the API) decide one after the other, each seeing
    what the other did.
    """
    job.cancel_requested, job.state = lock_job(job.pk)
    if job.state != JobState.RUNNING:
        return
    if job.cancel_requested:
        cancel_unstarted_steps(job)

    # What deciding needs; move_to changes a step by its id and state alone.
    steps = list(job.steps.only(*DECIDING_FIELDS).order_by("index"))
    chained = backend_for(job.queue).queues_steps
    for step in steps:
        if step.state not in (StepState.PENDING, StepState.QUEUED):
            continue
        runs = runs_after_earlier_steps(steps, step)
        if runs is False:
            step.move_to(StepState.SKIPPED, scheduler_reason="")
        elif step.state == StepState.PENDING and (chained or runs):
            step.move_to(StepState.QUEUED)
        if not chained and step.state not in FINAL_STEP_STATES:
            return

    if all(step.state in FINAL_STEP_STATES for step in steps):
        job.move_to(JobState.STAGING_OUT, outcome=_outcome(steps))


def lock_job(job_id: int) -> tuple[bool, str]:
    """Lock a job's row until the transaction ends; its cancel request and state as of now."""
    current = Job.objects.select_for_update().filter(pk=job_id)
    return current.values_list("cancel_requested", "state").get()


def runs_after_earlier_steps(steps: list[JobStep], step: JobStep) -> bool | None:
    """Whether a step should run given how the steps before it ended; None while one has not.

    A step runs unless the last step before it that did not skip failed, timed out or was
    cancelled, and it is not one that runs after a failure.
    """
    previous_failed = False
    for before in steps:
        if before.index >= step.index:
            break
        if before.state not in FINAL_STEP_STATES:
            return None
        if before.state != StepState.SKIPPED:
            previous_failed = before.state in FAILED_STEP_STATES | {StepState.CANCELLED}
    return not previous_failed or step.run_if_previous_step_fails


def _outcome(steps: list[JobStep]) -> JobState:
    """How a job ended, from the final states of its steps."""
    states = {step.state for step in steps}
    if StepState.CANCELLED in states:
        return JobState.CANCELLED
    if states & FAILED_STEP_STATES:
        return JobState.FAILED
    return JobState.COMPLETE


def busy_cores_by_queue() -> dict[int, int]:
    """Cores taken by running steps, per queue id."""
    busy: dict[int, int] = {}
    running = JobStep.objects.filter(state__in=ACTIVE_STEP_STATES).values_list(
        "job__queue_id", "num_tasks", "threads_per_task"
    )
    for queue_id, num_tasks, threads in running:
        busy[queue_id] = busy.get(queue_id, 0) + num_tasks * threads
    return busy


def upload_excludes(job: Job) -> list[str]:
    """Patterns of the case folder that stage-out leaves behind, by the application's rules."""
    driver = get_driver(job.app_version.driver)
    return driver.upload_excludes(job.app_options, job.outcome == JobState.FAILED)


def read_residuals(step: JobStep, backend, launch) -> dict | None:
    """The residuals in a step's full stdout, as stored on the step, or None."""
    driver = get_driver(step.job.app_version.driver)
    series = driver.residuals(step.step_name, backend.stdout_lines(launch))
    if series is None:
        return None
    return {"times": series.times, "fields": series.fields}
