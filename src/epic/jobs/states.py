"""The life cycle of jobs and steps: states, display strings and allowed transitions."""

from django.db import models


class JobState(models.TextChoices):
    """Where a job is in its life."""

    # Created; waits for authorisation (if required) and for the worker to stage its data in.
    PENDING = "pending", "Pending"
    # The worker is copying the input folder into the job's working folder.
    STAGING_IN = "staging_in", "Staging In"
    # Steps are queued or running.
    RUNNING = "running", "Running"
    # The steps have ended; results are being copied back to the data store.
    STAGING_OUT = "staging_out", "Staging Out"
    # Every step that ran succeeded and the results are stored.
    COMPLETE = "complete", "Job Complete"
    # A step failed, or the input could not be staged.
    FAILED = "failed", "Job Failed"
    # A user cancelled it.
    CANCELLED = "cancelled", "Job Cancelled"
    # A team admin refused to authorise it; it never ran.
    REJECTED = "rejected", "Job Rejected"


FINAL_JOB_STATES = {JobState.COMPLETE, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED}

JOB_TRANSITIONS = {
    JobState.PENDING: {JobState.STAGING_IN, JobState.CANCELLED, JobState.REJECTED},
    JobState.STAGING_IN: {JobState.RUNNING, JobState.STAGING_OUT, JobState.PENDING},
    JobState.RUNNING: {JobState.STAGING_OUT},
    JobState.STAGING_OUT: {JobState.COMPLETE, JobState.FAILED, JobState.CANCELLED},
}


class StepState(models.TextChoices):
    """Where a job step is in its life."""

    # Waits for the steps before it.
    PENDING = "pending", "Pending"
    # Runnable; waits for free cores on its queue, or to be handed to its scheduler.
    QUEUED = "queued", "Queued"
    # Handed to a scheduler that holds it in its own queue (for resources, or for the step
    # before it); the step's scheduler_reason says why it waits.
    SUBMITTED = "submitted", "Queued"
    # Its processes are running.
    RUNNING = "running", "Running"
    # Exited with code 0.
    COMPLETE = "complete", "Step Complete"
    # Exited with a non-zero code, or its processes were lost.
    FAILED = "failed", "Step Failed"
    # Killed because it reached its runtime limit.
    TIMED_OUT = "timed_out", "Step Timed Out"
    # Stopped, or never started, because the job was cancelled.
    CANCELLED = "cancelled", "Step Cancelled"
    # Never ran: an earlier step failed and this one does not run after a failure.
    SKIPPED = "skipped", "Step Skipped"


FINAL_STEP_STATES = {
    StepState.COMPLETE,
    StepState.FAILED,
    StepState.TIMED_OUT,
    StepState.CANCELLED,
    StepState.SKIPPED,
}
FAILED_STEP_STATES = {StepState.FAILED, StepState.TIMED_OUT}
# Steps a compute backend holds: the worker watches them and stops them on a cancel.
ACTIVE_STEP_STATES = {StepState.SUBMITTED, StepState.RUNNING}

STEP_TRANSITIONS = {
    StepState.PENDING: {StepState.QUEUED, StepState.SKIPPED, StepState.CANCELLED},
    StepState.QUEUED: {
        StepState.SUBMITTED,
        StepState.RUNNING,
        StepState.CANCELLED,
        StepState.FAILED,
        StepState.SKIPPED,
    },
    # A submitted step may end without ever running: cancelled, or skipped when the step it
    # waited for failed.
    StepState.SUBMITTED: {
        StepState.RUNNING,
        StepState.COMPLETE,
        StepState.FAILED,
        StepState.TIMED_OUT,
        StepState.CANCELLED,
        StepState.SKIPPED,
    },
    StepState.RUNNING: {
        StepState.COMPLETE,
        StepState.FAILED,
        StepState.TIMED_OUT,
        StepState.CANCELLED,
    },
}


class InvalidTransitionError(RuntimeError):
    """A state change that the life cycle does not allow."""


class AuthState(models.TextChoices):
    """A team admin's decision on a job that needs authorisation."""

    PENDING = "PENDING", "Pending"
    AUTHORISED = "AUTHORISED", "Authorised"
    REJECTED = "REJECTED", "Rejected"
