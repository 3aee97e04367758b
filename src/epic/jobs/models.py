"""Job arrays, jobs, job steps and log refresh requests."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from epic.accounts.models import Team
from epic.catalog.models import ApplicationVersion, Queue
from epic.jobs.states import (
    FINAL_JOB_STATES,
    JOB_TRANSITIONS,
    STEP_TRANSITIONS,
    InvalidTransitionError,
    JobState,
    StepState,
)
from epic.projects.models import Project


def wallclock_of(start, end) -> str | None:
    """The time from a step's start to its end (or to now) as H:MM:SS; None before it starts."""
    if start is None:
        return None
    seconds = int(((end or timezone.now()) - start).total_seconds())
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class JobArray(models.Model):
    """One submission: a named group of jobs sharing a configuration and common data."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="job_arrays")
    name = models.CharField(max_length=100, default="Job Array")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    common_path = models.CharField(max_length=1100, blank=True)
    created = models.DateTimeField(auto_now_add=True)


class Job(models.Model):
    """A run of one application version on one queue, made of ordered steps."""

    array = models.ForeignKey(JobArray, on_delete=models.CASCADE, related_name="jobs")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="jobs")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    name = models.CharField(max_length=100)
    app_version = models.ForeignKey(ApplicationVersion, on_delete=models.PROTECT)
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="jobs")
    project = models.ForeignKey(Project, null=True, on_delete=models.PROTECT)
    invoice_reference = models.CharField(max_length=100, blank=True)
    app_options = models.JSONField(default=dict)
    # The tasks as submitted, kept so that options changed before the start can be re-planned.
    tasks = models.JSONField(default=list)
    config = models.JSONField(default=dict)
    input_path = models.CharField(max_length=1100)
    state = models.CharField(max_length=20, choices=JobState.choices, default=JobState.PENDING)
    # The final state decided when the steps end, applied once stage-out is done.
    outcome = models.CharField(max_length=20, choices=JobState.choices, blank=True)
    status_reason = models.CharField(max_length=500, blank=True)
    cancel_requested = models.BooleanField(default=False)
    requires_auth = models.BooleanField(default=False)
    # PENDING until a team admin decides, then AUTHORISED or REJECTED; empty when not required.
    auth_state = models.CharField(max_length=10, blank=True)
    quoted_cost = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    # The quote in each display currency, as the quote endpoint showed it (items converted,
    # rounded, then added), so that a job's cost and its quote agree to the penny.
    quoted_costs = models.JSONField(default=dict)
    cost_currency = models.CharField(max_length=3, default="GBP")
    created = models.DateTimeField(default=timezone.now, db_index=True)
    staged_in_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    # The worker that looks after the job until it ends (see WorkerProcess), and until when
    # its claim holds unless renewed: another worker takes the job over once it lapses.
    worker = models.CharField(max_length=100, blank=True)
    lease_expires = models.DateTimeField(null=True)

    class Meta:
        indexes = [
            models.Index(fields=["team", "-id"]),
            models.Index(fields=["state"]),
            models.Index(fields=["worker", "state"]),
        ]

    @property
    def finished(self) -> bool:
        """Whether the job has reached its end."""
        return self.state in FINAL_JOB_STATES

    def move_to(self, new_state: JobState, **fields) -> bool:
        """Change state if the job is still where this object last saw it; False if it was not.

        The update is conditional on the current state, so two workers can never both
        make the same move.
        """
        if new_state not in JOB_TRANSITIONS.get(self.state, set()):
            raise InvalidTransitionError(f"Job {self.pk}: {self.state} -> {new_state}")
        if new_state in FINAL_JOB_STATES:
            fields.setdefault("finished_at", timezone.now())

        moved = Job.objects.filter(pk=self.pk, state=self.state).update(state=new_state, **fields)
        if moved:
            self.state = new_state
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(moved)


class JobStep(models.Model):
    """One step of a job: the commands it runs, its resources and what happened."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="steps")
    # The job's team, repeated so that a team's steps are listed and counted from one index.
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+", db_index=False)
    index = models.PositiveIntegerField()
    step_name = models.CharField(max_length=30)
    run_if_previous_step_fails = models.BooleanField(default=False)
    node_count = models.PositiveIntegerField(default=1)
    num_tasks = models.PositiveIntegerField(default=1)
    tasks_per_node = models.PositiveIntegerField(default=1)
    threads_per_task = models.PositiveIntegerField(default=1)
    max_runtime = models.PositiveIntegerField(default=1, help_text="Hours.")
    plan = models.JSONField(default=dict, help_text="Commands, files and environment to run.")
    state = models.CharField(max_length=20, choices=StepState.choices, default=StepState.PENDING)
    exit_code = models.IntegerField(null=True)
    local_job_id = models.BigIntegerField(null=True)
    start = models.DateTimeField(null=True)
    end = models.DateTimeField(null=True)
    stdout_tail = models.TextField(blank=True)
    stderr_tail = models.TextField(blank=True)
    logs_updated = models.DateTimeField(null=True)
    residuals = models.JSONField(null=True)
    # The scheduler's word on the step while it waits or runs (e.g. Slurm's pending reason).
    scheduler_reason = models.CharField(max_length=200, blank=True)
    # Why the worker is stopping the step ("cancel" or "timeout"), kept across restarts.
    stop_requested = models.CharField(max_length=10, blank=True)
    stop_requested_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["job_id", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="step_order")]
        indexes = [
            models.Index(fields=["state"]),
            # The order of the step list, newest job first, within a team.
            models.Index(fields=["team", "-job", "index"]),
        ]

    def save(self, *args, **kwargs):
        """Save the step, taking its team from its job when none was given."""
        if self.team_id is None:
            self.team_id = self.job.team_id
        super().save(*args, **kwargs)

    @property
    def cores(self) -> int:
        """Cores the step occupies while it runs."""
        return self.num_tasks * self.threads_per_task

    @property
    def wallclock(self) -> str | None:
        """Elapsed run time as H:MM:SS, up to now while it runs."""
        return wallclock_of(self.start, self.end)

    def move_to(self, new_state: StepState, **fields) -> bool:
        """Change state if the step is still where this object last saw it; False if it was not."""
        if new_state not in STEP_TRANSITIONS.get(self.state, set()):
            raise InvalidTransitionError(f"Step {self.pk}: {self.state} -> {new_state}")

        moved = JobStep.objects.filter(pk=self.pk, state=self.state).update(
            state=new_state, **fields
        )
        if moved:
            self.state = new_state
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(moved)


class LogRefresh(models.Model):
    """A user's request for the latest log tail of a step, answered by the worker."""

    step = models.ForeignKey(JobStep, on_delete=models.CASCADE, related_name="refreshes")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    created = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, db_index=True)

    @property
    def response_recieved(self) -> bool:
        """Whether the worker has refreshed the logs (the API's spelling)."""
        return self.answered_at is not None


class WorkerProcess(models.Model):
    """A running worker, known by the name its jobs record, and where and when it was seen."""

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    heartbeat = models.DateTimeField()
