"""The worker's scheduling loop: one pass moves every job and step as far as it can go."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from epic.billing import ledger
from epic.compute.base import RunState, SchedulerUnavailableError
from epic.compute.registry import backend_for
from epic.data.services import object_store
from epic.jobs.models import Job, JobStep, LogRefresh
from epic.jobs.states import FINAL_JOB_STATES, AuthState, JobState, StepState
from epic.worker import lifecycle
from epic.worker.launches import launch_for
from epic.worker.staging import StagingError, stage_in, stage_out
from epic.worker.wakeup import wait_for_work, wake_worker

logger = logging.getLogger(__name__)

LOG_TAIL_BYTES = 64 * 1024
LOG_REFRESH_INTERVAL = timedelta(seconds=10)
# How long a step may take to stop after SIGTERM before it is killed.
STOP_GRACE = timedelta(seconds=10)
# What schedulers call a job they ended at its time limit.
SCHEDULER_TIMEOUTS = {"TIMEOUT", "TimeLimit"}
# How often a running step's charge is brought up to date in the spend ledger.
CHARGE_INTERVAL = timedelta(minutes=2)
# How long staging work that failed unexpectedly waits before it is tried again.
STAGING_RETRY = timedelta(seconds=30)


_EPOCH = datetime.min.replace(tzinfo=UTC)


def _now() -> datetime:
    """The current time, aware."""
    return timezone.now()


class Worker:
    """Dispatches jobs, starts and watches their steps, and stages their data in and out.

    Limitation: run one worker per database. Claims of jobs are atomic, but a step is handed
    to its backend before its move to RUNNING is recorded, so two workers could both start it.
    """

    def __init__(self, staging_threads: int = 2):
        # With no staging threads, staging runs inline (used by tests on one connection).
        self._staging = (
            ThreadPoolExecutor(staging_threads, thread_name_prefix="epic-staging")
            if staging_threads
            else None
        )
        self._staging_jobs: set[int] = set()
        self._retry_after: dict[int, datetime] = {}
        self._charged_at: dict[int, datetime] = {}
        self._lock = threading.Lock()
        self._logs_read_at: dict[int, object] = {}

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set; a failing pass is logged and the next one goes on."""
        self.recover()
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                logger.exception("Worker pass failed; retrying")
            finally:
                close_old_connections()
            wait_for_work(settings.EPIC_WORKER_POLL_SECONDS)
        if self._staging is not None:
            self._staging.shutdown(wait=True)

    def recover(self) -> None:
        """After a restart, redo the staging that a previous worker left unfinished."""
        for job in Job.objects.filter(state=JobState.STAGING_IN):
            job.move_to(JobState.PENDING)
            logger.warning("Job %s: stage-in was interrupted; it will be redone", job.pk)

    def run_once(self) -> None:
        """One pass over all unfinished work."""
        self.handle_cancellations()
        self.dispatch_pending_jobs()
        self.watch_running_steps()
        self.start_queued_steps()
        self.answer_log_refreshes()
        self.finish_jobs_staging_out()

    # Cancellation

    def handle_cancellations(self) -> None:
        """Stop the steps of jobs whose cancellation was requested."""
        for job in Job.objects.filter(cancel_requested=True).exclude(state__in=FINAL_JOB_STATES):
            if job.state == JobState.PENDING:
                lifecycle.cancel_unstarted_steps(job)
                job.move_to(JobState.CANCELLED, status_reason="Cancelled before it started.")
                logger.info("Job %s: cancelled before it started", job.pk)
            elif job.state == JobState.RUNNING:
                self._cancel_running_job(job)

    def _cancel_running_job(self, job: Job) -> None:
        """Cancel what has not started and stop what runs; with nothing running, end the job."""
        lifecycle.cancel_unstarted_steps(job)
        running = job.steps.filter(state=StepState.RUNNING).select_related(
            "job__queue__cluster", "job__app_version"
        )
        if not running:
            lifecycle.advance(job)
        for step in running:
            self._stop_step(step, lifecycle.STOP_CANCEL)

    def _stop_step(self, step: JobStep, reason: str) -> None:
        """Ask a running step to stop, and kill it if it ignores that for STOP_GRACE."""
        now = timezone.now()
        if not step.stop_requested:
            JobStep.objects.filter(pk=step.pk).update(stop_requested=reason, stop_requested_at=now)
            step.stop_requested, step.stop_requested_at = reason, now
        force = now - step.stop_requested_at > STOP_GRACE
        backend_for(step.job.queue).stop(launch_for(step), step.local_job_id, force=force)

    # Dispatch and staging

    def dispatch_pending_jobs(self) -> None:
        """Claim authorised pending jobs and stage their input in the background."""
        authorised = Q(requires_auth=False) | Q(auth_state=AuthState.AUTHORISED)
        pending = Job.objects.filter(
            authorised, state=JobState.PENDING, cancel_requested=False
        ).select_related("array", "submitted_by")
        for job in pending.order_by("id")[:50]:
            if job.move_to(JobState.STAGING_IN):
                self._in_background(job.pk, self._stage_in, job)

    def _in_background(self, job_id: int, work, job: Job) -> None:
        """Run staging work in the pool, once per job at a time."""
        with self._lock:
            if job_id in self._staging_jobs or self._retry_after.get(job_id, _EPOCH) > _now():
                return
            self._staging_jobs.add(job_id)
        if self._staging is None:
            self._guarded(job_id, work, job)
            return
        self._staging.submit(self._guarded, job_id, work, job)

    def _guarded(self, job_id: int, work, job: Job) -> None:
        """Run one piece of staging work, logging failures and releasing the job."""
        try:
            work(job)
        except Exception:
            logger.exception("Job %s: staging failed; retrying in %s", job_id, STAGING_RETRY)
            self._retry_after[job_id] = _now() + STAGING_RETRY
        finally:
            with self._lock:
                self._staging_jobs.discard(job_id)
            if self._staging is not None:
                connection.close()
            wake_worker()

    def _stage_in(self, job: Job) -> None:
        """Copy the input in, then queue the first step; a missing input fails the job."""
        try:
            stage_in(job, object_store())
        except StagingError as error:
            lifecycle.fail_before_start(job, str(error))
            return
        lifecycle.start_running(job)

    def finish_jobs_staging_out(self) -> None:
        """Stage out jobs whose steps have ended, then give them their final state."""
        for job in Job.objects.filter(state=JobState.STAGING_OUT).select_related(
            "submitted_by", "app_version"
        ):
            self._in_background(job.pk, self._stage_out, job)

    def _stage_out(self, job: Job) -> None:
        """Upload results if the job's ending is one the user asked for, then finish it.

        A failure to upload ends the job as failed, with the reason; its results stay in its
        working folder on the server.
        """
        ending = {
            JobState.COMPLETE: "complete",
            JobState.FAILED: "failure",
            JobState.CANCELLED: "cancel",
        }[job.outcome]
        final, reason = job.outcome, job.status_reason
        if ending in job.config.get("upload", []) and job.staged_in_at is not None:
            try:
                report = stage_out(job, object_store(), lifecycle.upload_excludes(job))
            except OSError as error:
                logger.exception("Job %s: stage-out failed", job.pk)
                final, reason = JobState.FAILED, f"Results could not be uploaded: {error}"
            else:
                if report.refused:
                    reason = "Not uploaded: " + "; ".join(report.refused)
        job.move_to(final, status_reason=reason[:500])
        logger.info("Job %s: %s", job.pk, job.get_state_display())

    # Steps

    def start_queued_steps(self) -> None:
        """Start queued steps in submission order while their queue has free cores."""
        queued = (
            JobStep.objects.filter(state=StepState.QUEUED)
            .select_related("job__queue__cluster", "job__app_version")
            .order_by("job_id", "index")
        )
        busy = lifecycle.busy_cores_by_queue()
        blocked_queues: set[int] = set()
        for step in queued:
            queue = step.job.queue
            if queue.pk in blocked_queues:
                continue
            capacity = backend_for(queue).capacity()
            if capacity is not None and busy.get(queue.pk, 0) + step.cores > capacity:
                blocked_queues.add(queue.pk)
                continue
            if not self._start_step(step):
                blocked_queues.add(queue.pk)
                continue
            busy[queue.pk] = busy.get(queue.pk, 0) + step.cores

    def _start_step(self, step: JobStep) -> bool:
        """Hand a step to its backend and record that it runs; False if the scheduler is silent.

        A step that cannot start fails; one whose scheduler did not answer stays queued.
        """
        launch = launch_for(step)
        try:
            backend_id = backend_for(step.job.queue).start(launch)
        except SchedulerUnavailableError as error:
            logger.warning("Job %s: scheduler did not answer; will retry: %s", step.job_id, error)
            JobStep.objects.filter(pk=step.pk).update(scheduler_reason=str(error)[:200])
            return False
        except (OSError, RuntimeError) as error:
            logger.exception("Job %s: step %s could not start", step.job_id, step.step_name)
            step.move_to(StepState.FAILED, end=timezone.now(), stderr_tail=f"epic: {error}\n")
            lifecycle.advance(step.job)
            return True
        step.move_to(
            StepState.RUNNING, local_job_id=backend_id, start=timezone.now(), scheduler_reason=""
        )
        logger.info("Job %s: step %s started", step.job_id, step.step_name)
        return True

    def watch_running_steps(self) -> None:
        """Record steps that ended, stop those over their runtime, refresh stale log tails."""
        running = list(
            JobStep.objects.filter(state=StepState.RUNNING).select_related(
                "job__queue__cluster", "job__app_version"
            )
        )
        self._refresh_backends(running)
        for step in running:
            launch = launch_for(step)
            status = backend_for(step.job.queue).status(launch, step.local_job_id)
            if status.state == RunState.RUNNING:
                self._note_reason(step, status.reason)
                if step.stop_requested:
                    self._stop_step(step, step.stop_requested)
                self._enforce_runtime(step)
                self._refresh_logs_if_stale(step)
                self._charge_if_due(step)
                continue
            self._record_end(step, status)

    def _refresh_backends(self, running: list[JobStep]) -> None:
        """Let each backend learn the state of all its running steps in one go."""
        by_backend: dict[int, tuple[object, list]] = {}
        for step in running:
            backend = backend_for(step.job.queue)
            entry = by_backend.setdefault(id(backend), (backend, []))
            entry[1].append((launch_for(step), step.local_job_id))
        for backend, launches in by_backend.values():
            backend.refresh(launches)

    def _note_reason(self, step: JobStep, reason: str | None) -> None:
        """Keep the scheduler's word on a step (such as why it still waits) for users to see."""
        reason = (reason or "")[:200]
        if reason != step.scheduler_reason:
            JobStep.objects.filter(pk=step.pk).update(scheduler_reason=reason)

    def _charge_if_due(self, step: JobStep) -> None:
        """Charge a running step for what it has used, every CHARGE_INTERVAL."""
        last = self._charged_at.get(step.pk)
        if last is None or _now() - last > CHARGE_INTERVAL:
            ledger.charge(step)
            self._charged_at[step.pk] = _now()

    def _enforce_runtime(self, step: JobStep) -> None:
        """Stop a step that has run longer than its runtime limit."""
        limit = timedelta(hours=step.max_runtime)
        if step.start and timezone.now() - step.start > limit:
            if not step.stop_requested:
                logger.info("Job %s: step %s hit its runtime limit", step.job_id, step.step_name)
            self._stop_step(step, step.stop_requested or lifecycle.STOP_TIMEOUT)

    def _record_end(self, step: JobStep, status) -> None:
        """Store how a step ended, with its final logs, and move the job on."""
        launch = launch_for(step)
        backend = backend_for(step.job.queue)
        stdout, stderr = backend.read_logs(launch, LOG_TAIL_BYTES)
        new_state = self._end_state(step, status)
        exit_code = status.exit_code
        if status.state == RunState.LOST and not step.stop_requested:
            stderr += "\nepic: the step was killed before it could record its exit code.\n"

        step.move_to(
            new_state,
            exit_code=exit_code,
            end=status.ended_at or timezone.now(),
            stdout_tail=stdout,
            stderr_tail=stderr,
            logs_updated=timezone.now(),
            residuals=lifecycle.read_residuals(step, backend, launch),
        )
        ledger.charge(step, final=True)
        logger.info("Job %s: step %s %s", step.job_id, step.step_name, new_state.label)
        lifecycle.advance(step.job)

    def _end_state(self, step: JobStep, status) -> StepState:
        """The step's final state from how it ended and why it was stopped."""
        if step.stop_requested == lifecycle.STOP_CANCEL:
            return StepState.CANCELLED
        if step.stop_requested == lifecycle.STOP_TIMEOUT or status.reason in SCHEDULER_TIMEOUTS:
            return StepState.TIMED_OUT
        if status.state == RunState.EXITED and status.exit_code == 0:
            return StepState.COMPLETE
        return StepState.FAILED

    # Logs

    def answer_log_refreshes(self) -> None:
        """Refresh the log tails that users asked for, then mark their requests answered."""
        requests = LogRefresh.objects.filter(answered_at__isnull=True).select_related(
            "step__job__queue__cluster", "step__job__app_version"
        )
        for request in requests:
            if request.step.state == StepState.RUNNING:
                self._refresh_logs(request.step)
            request.answered_at = timezone.now()
            request.save(update_fields=["answered_at"])

    def _refresh_logs_if_stale(self, step: JobStep) -> None:
        """Refresh a running step's log tails at most every LOG_REFRESH_INTERVAL."""
        last = self._logs_read_at.get(step.pk)
        if last is None or timezone.now() - last > LOG_REFRESH_INTERVAL:
            self._refresh_logs(step)

    def _refresh_logs(self, step: JobStep) -> None:
        """Copy the latest tails of a running step's logs into the database."""
        launch = launch_for(step)
        stdout, stderr = backend_for(step.job.queue).read_logs(launch, LOG_TAIL_BYTES)
        JobStep.objects.filter(pk=step.pk).update(
            stdout_tail=stdout, stderr_tail=stderr, logs_updated=timezone.now()
        )
        self._logs_read_at[step.pk] = timezone.now()
