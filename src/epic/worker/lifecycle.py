"""The one place where a job moves from step to step and decides how it ended."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from epic.jobs.models import Job, JobStep
from epic.jobs.states import FAILED_STEP_STATES, FINAL_STEP_STATES, JobState, StepState
from epic.software.registry import get_driver

logger = logging.getLogger(__name__)

STOP_CANCEL = "cancel"
STOP_TIMEOUT = "timeout"


def cancel_unstarted_steps(job: Job) -> None:
    """Mark every step that has not started as cancelled."""
    for step in job.steps.filter(state__in=[StepState.PENDING, StepState.QUEUED]):
        step.move_to(StepState.CANCELLED)


@transaction.atomic
def start_running(job: Job) -> None:
    """After stage-in: the job runs and its first step is queued."""
    if not job.move_to(JobState.RUNNING, staged_in_at=timezone.now()):
        return
    advance(job)


def fail_before_start(job: Job, reason: str) -> None:
    """End a job whose input could not be staged: no step runs, nothing is uploaded."""
    for step in job.steps.filter(state=StepState.PENDING):
        step.move_to(StepState.SKIPPED)
    job.move_to(JobState.STAGING_OUT, outcome=JobState.FAILED, status_reason=reason[:500])
    logger.info("Job %s: failed before start: %s", job.pk, reason)


def advance(job: Job) -> None:
    """Queue the next step that should run, or end the job when no step is left."""
    job.refresh_from_db(fields=["cancel_requested", "state"])
    if job.state != JobState.RUNNING:
        return
    if job.cancel_requested:
        cancel_unstarted_steps(job)

    previous_failed = False
    steps = list(job.steps.order_by("index"))
    for step in steps:
        if step.state in (StepState.QUEUED, StepState.RUNNING):
            return
        if step.state in FINAL_STEP_STATES:
            if step.state != StepState.SKIPPED:
                previous_failed = step.state in FAILED_STEP_STATES | {StepState.CANCELLED}
            continue
        if previous_failed and not step.run_if_previous_step_fails:
            step.move_to(StepState.SKIPPED)
            continue
        step.move_to(StepState.QUEUED)
        return

    job.move_to(JobState.STAGING_OUT, outcome=_outcome(steps))


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
    running = JobStep.objects.filter(state=StepState.RUNNING).values_list(
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
