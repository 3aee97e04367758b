"""The worker's scheduling loop: one pass moves every job and step as far as it can go."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from epic.billing import ledger
from epic.compute.base import RunState, SchedulerUnavailableError, StepBlockedError
from epic.compute.registry import backend_for
from epic.data.services import object_store
from epic.jobs.models import Job, JobStep, LogRefresh
from epic.jobs.states import ACTIVE_STEP_STATES, AuthState, JobState, StepState
from epic.licences.services import environment_for
from epic.worker import leases, lifecycle
from epic.worker.launches import launch_for
from epic.worker.staging import StagingError, discard_staged, stage_in, stage_out
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
# How often steps handed to backends are watched for a start, an end or a limit.
WATCH_INTERVAL = timedelta(seconds=0.5)
# How long staging work that failed unexpectedly waits before it is tried again.
STAGING_RETRY = timedelta(seconds=30)
# Steps per update when saving the scheduler's reasons, well under SQLite's parameter limit.
REASON_BATCH = 500


_EPOCH = datetime.min.replace(tzinfo=UTC)
CANCELLABLE_JOB_STATES = (JobState.PENDING, JobState.RUNNING)


def _now() -> datetime:
    """The current time, aware."""
    return timezone.now()


def _chain_link(step: JobStep, chain: list[JobStep] | None) -> tuple[bool, tuple | None]:
    """Whether a queued step can be handed over now, and the step it must then wait for.

    Without a chain (the backend starts steps itself, or this is a job's first step) it
    can. In a chain it can once the step before it was handed over (it then waits for that
    one's backend id), or once every step before it ended and it is still due to run.
    """
    earlier = [before for before in chain or [] if before.index < step.index]
    if not earlier:
        return True, None
    previous = earlier[-1]
    if previous.state in ACTIVE_STEP_STATES and previous.local_job_id is not None:
        return True, (previous.local_job_id, step.run_if_previous_step_fails)
    return lifecycle.runs_after_earlier_steps(chain, step) is True, None


def _split_by_turn(steps, chains, silent_queues: set[int]) -> tuple[list, list[JobStep]]:
    """Steps whose turn came, each with the step it must wait for; and the steps still waiting.

    Steps of a queue whose scheduler did not answer in this pass are left for the next one.
    """
    ready, waiting = [], []
    for step in steps:
        if step.job.queue_id in silent_queues:
            continue
        can_start, after = _chain_link(step, chains.get(step.job_id))
        if can_start:
            ready.append((step, after))
        else:
            waiting.append(step)
    return ready, waiting


def _by_backend(ready: list[tuple[JobStep, tuple | None]]) -> dict:
    """Steps grouped by the backend that starts them, in order."""
    groups: dict = {}
    for step, after in ready:
        groups.setdefault(backend_for(step.job.queue), []).append((step, after))
    return groups


def _start_one(backend, launch) -> int | Exception:
    """Start one step: its backend id, or the error that stopped it."""
    try:
        return backend.start(launch)
    except (SchedulerUnavailableError, StepBlockedError, OSError, RuntimeError) as error:
        return error


def _start_if_ran(status, ended: datetime) -> datetime | None:
    """A start time for a step that ended before it was seen running: its end, if it ran."""
    return ended if status.exit_code is not None and status.state == RunState.EXITED else None


class Worker:
    """Dispatches jobs, starts and watches their steps, and stages their data in and out.

    A worker looks after the jobs it holds a lease on (see `leases`): several workers may
    share one database, each with its own name.
    """

    def __init__(self, staging_threads: int = 4, name: str | None = None):
        self.name = name or settings.EPIC_WORKER_NAME
        self._lease = leases.lease_length(settings.EPIC_WORKER_LEASE_SECONDS)
        self._renewed_at = _EPOCH
        self._watched_at = _EPOCH
        self._registered = False
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
        self._launches: dict[int, object] = {}
        # Scheduler reasons noted while watching, by reason: the ids of the steps they are for.
        self._reasons: dict[str, list[int]] = {}
        self._licences: dict[tuple[int, int], dict[str, str]] = {}

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set; a failing pass is logged and the next one goes on."""
        if not self._registered:
            self.register()
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

    def register(self) -> None:
        """Claim this worker's name; DuplicateWorkerError if a live worker has it."""
        leases.register(self.name, self._lease)
        self._registered = True

    def recover(self) -> None:
        """After a restart, redo the staging this worker left unfinished and move its jobs on.

        A job whose last step ended just before the restart may not have been moved on.
        """
        leases.release_interrupted_staging(self.name)
        for job in self._jobs().filter(state=JobState.RUNNING).select_related("queue__cluster"):
            lifecycle.advance(job)

    def run_once(self) -> None:
        """One pass over all unfinished work of the jobs this worker holds."""
        self._launches, self._licences = {}, {}
        self.hold_jobs()
        self.handle_cancellations()
        self.dispatch_pending_jobs()
        self.watch_running_steps()
        self.start_queued_steps()
        self.answer_log_refreshes()
        self.finish_jobs_staging_out()

    # Leases

    def hold_jobs(self) -> None:
        """Renew this worker's leases when a quarter has passed, and claim jobs nobody holds."""
        if _now() - self._renewed_at > self._lease / 4:
            leases.renew(self.name, self._lease)
            self._renewed_at = _now()
        if leases.claim(self.name, self._lease) == leases.CLAIM_BATCH:
            # More may be waiting: the next pass comes at once.
            wake_worker()

    def _jobs(self):
        """The jobs this worker holds."""
        return Job.objects.filter(worker=self.name)

    def _steps(self):
        """The steps of the jobs this worker holds."""
        return JobStep.objects.filter(job__worker=self.name)

    # Cancellation

    def handle_cancellations(self) -> None:
        """Stop the steps of jobs whose cancellation was requested."""
        for job in self._jobs().filter(cancel_requested=True, state__in=CANCELLABLE_JOB_STATES):
            if job.state == JobState.PENDING:
                lifecycle.cancel_unstarted_steps(job)
                job.move_to(JobState.CANCELLED, status_reason="Cancelled before it started.")
                logger.info("Job %s: cancelled before it started", job.pk)
            elif job.state == JobState.RUNNING:
                self._cancel_running_job(job)

    def _cancel_running_job(self, job: Job) -> None:
        """Cancel what has not started and stop what runs; with nothing running, end the job."""
        lifecycle.cancel_unstarted_steps(job)
        running = job.steps.filter(state__in=ACTIVE_STEP_STATES).select_related(
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
        backend_for(step.job.queue).stop(self._launch(step), step.local_job_id, force=force)

    # Dispatch and staging

    def dispatch_pending_jobs(self) -> None:
        """Claim authorised pending jobs and stage their input in the background."""
        authorised = Q(requires_auth=False) | Q(auth_state=AuthState.AUTHORISED)
        pending = (
            self._jobs()
            .filter(authorised, state=JobState.PENDING, cancel_requested=False)
            .select_related("array", "submitted_by", "queue__cluster")
        )
        jobs = {job.pk: job for job in pending.order_by("id")[: leases.CLAIM_BATCH]}
        if not jobs:
            return

        # One update for the whole batch; a job cancelled meanwhile is left pending.
        pending.filter(pk__in=jobs).update(state=JobState.STAGING_IN)
        moved = Job.objects.filter(pk__in=jobs, state=JobState.STAGING_IN).values_list("pk")
        for (job_id,) in moved:
            job = jobs[job_id]
            job.state = JobState.STAGING_IN
            self._in_background(job_id, self._stage_in, job)

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
            # The pool thread keeps its connection between jobs, unless it may be broken.
            if self._staging is not None:
                connection.close()
        finally:
            with self._lock:
                self._staging_jobs.discard(job_id)
            wake_worker()

    def _stage_in(self, job: Job) -> None:
        """Copy the input in, then queue the first step; a missing input fails the job.

        A job this worker no longer holds (its lease lapsed and another worker took it over)
        is left to its new worker, and the copy made here is thrown away.
        """
        try:
            staged = stage_in(job, object_store())
        except StagingError as error:
            if self._jobs().filter(pk=job.pk, state=JobState.STAGING_IN).exists():
                lifecycle.fail_before_start(job, str(error))
            return
        if not lifecycle.start_running(job, self.name, staged):
            discard_staged(staged)
            logger.warning("Job %s: taken over during stage-in; this copy is dropped", job.pk)

    def finish_jobs_staging_out(self) -> None:
        """Stage out jobs whose steps have ended, then give them their final state."""
        for job in (
            self._jobs()
            .filter(state=JobState.STAGING_OUT)
            .select_related("submitted_by", "app_version")
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
        """Hand queued steps to their backends in submission order.

        Steps of schedulers that queue steps go in rounds, many at once: a step is handed over
        once the step before it has been (chained to it), or once every step before it ended.
        Steps that run on this machine start one by one while their queue has free cores.
        """
        queued = list(
            self._steps()
            .filter(state=StepState.QUEUED)
            .select_related("job__queue__cluster", "job__app_version", "job__team")
            .order_by("job_id", "index")
        )
        scheduled = [step for step in queued if backend_for(step.job.queue).queues_steps]
        self._submit_in_rounds(scheduled, self._chains_of(scheduled))
        self._start_while_cores_free([step for step in queued if step not in scheduled])

    def _submit_in_rounds(self, steps: list[JobStep], chains: dict[int, list[JobStep]]) -> None:
        """Submit every step whose turn has come, then those chained to them, and so on."""
        silent_queues: set[int] = set()
        waiting = steps
        while waiting:
            ready, waiting = _split_by_turn(waiting, chains, silent_queues)
            if not ready:
                return
            for backend, batch in _by_backend(ready).items():
                launches = [self._start_launch(step, after) for step, after in batch]
                started = backend.start_many(launches)
                for (step, _), result in zip(batch, started, strict=True):
                    if not self._record_start(step, backend, result):
                        silent_queues.add(step.job.queue_id)

    def _start_while_cores_free(self, steps: list[JobStep]) -> None:
        """Start steps on this machine in order while their queue has free cores."""
        busy = lifecycle.busy_cores_by_queue()
        blocked_queues: set[int] = set()
        for step in steps:
            queue = step.job.queue
            if queue.pk in blocked_queues:
                continue
            capacity = backend_for(queue).capacity()
            if capacity is not None and busy.get(queue.pk, 0) + step.cores > capacity:
                blocked_queues.add(queue.pk)
                continue
            backend = backend_for(queue)
            launch = self._start_launch(step)
            if not self._record_start(step, backend, _start_one(backend, launch)):
                blocked_queues.add(queue.pk)
                continue
            busy[queue.pk] = busy.get(queue.pk, 0) + step.cores

    def _chains_of(self, queued: list[JobStep]) -> dict[int, list[JobStep]]:
        """All the steps, in order, of the jobs whose queued steps their scheduler chains.

        The queued steps themselves are the same objects as in `queued`, so that a step
        handed over in this pass is seen as such by the step after it.
        """
        job_ids = {
            step.job_id
            for step in queued
            if step.index > 0 and backend_for(step.job.queue).queues_steps
        }
        if not job_ids:
            return {}
        same = {step.pk: step for step in queued}
        chains: dict[int, list[JobStep]] = {}
        for step in JobStep.objects.filter(job_id__in=job_ids).order_by("job_id", "index"):
            chains.setdefault(step.job_id, []).append(same.get(step.pk, step))
        return chains

    def _record_start(self, step: JobStep, backend, result: int | Exception) -> bool:
        """Record what handing a step to its backend gave; False if the scheduler was silent.

        A step that could not start fails; one whose scheduler did not answer stays queued. A
        scheduler that holds steps in its own queue has the step submitted, not yet running.
        """
        if isinstance(result, SchedulerUnavailableError):
            logger.warning("Job %s: scheduler did not answer; will retry: %s", step.job_id, result)
            JobStep.objects.filter(pk=step.pk).update(scheduler_reason=str(result)[:200])
            return False
        if isinstance(result, StepBlockedError):
            reason = str(result)[:200]
            if reason != step.scheduler_reason:
                logger.warning("Job %s: step %s waits: %s", step.job_id, step.step_name, reason)
                JobStep.objects.filter(pk=step.pk).update(scheduler_reason=reason)
            return True
        if isinstance(result, Exception):
            logger.error(
                "Job %s: step %s could not start: %s", step.job_id, step.step_name, result
            )
            step.move_to(StepState.FAILED, end=timezone.now(), stderr_tail=f"epic: {result}\n")
            lifecycle.advance(step.job)
            return True

        if backend.queues_steps:
            step.move_to(StepState.SUBMITTED, local_job_id=result, scheduler_reason="")
        else:
            step.move_to(StepState.RUNNING, local_job_id=result, start=timezone.now())
        logger.info("Job %s: step %s %s", step.job_id, step.step_name, step.get_state_display())
        return True

    def watch_running_steps(self) -> None:
        """Record steps that started or ended, stop those over their runtime, refresh logs.

        At most every WATCH_INTERVAL: passes come as often as work arrives, and watching
        costs as much as there are steps running.
        """
        if _now() - self._watched_at < WATCH_INTERVAL:
            return
        self._watched_at = _now()
        active = list(
            self._steps()
            .filter(state__in=ACTIVE_STEP_STATES)
            .select_related("job__queue__cluster", "job__app_version")
            .order_by("job_id", "index")
        )
        self._refresh_backends(active)
        self._reasons = {}
        for step in active:
            try:
                self._watch_one(step)
            except Exception:
                # One step's fault (a bad log, a lost file) must not stop the others.
                logger.exception("Job %s: watching step %s failed", step.job_id, step.pk)
        self._save_reasons()

    def _watch_one(self, step: JobStep) -> None:
        """Move one step on from what its backend reports."""
        status = backend_for(step.job.queue).status(self._launch(step), step.local_job_id)
        if status.state in (RunState.WAITING, RunState.RUNNING):
            self._watch_active(step, status)
        elif not self._waits_for_earlier_steps(step, status):
            self._record_end(step, status)

    def _watch_active(self, step: JobStep, status) -> None:
        """Note that a submitted step started, pass on stop requests, keep logs and charges."""
        if status.state == RunState.RUNNING and step.state == StepState.SUBMITTED:
            step.move_to(StepState.RUNNING, start=status.started_at or timezone.now())
            logger.info("Job %s: step %s started", step.job_id, step.step_name)
        self._note_reason(step, status.reason)
        if step.stop_requested:
            self._stop_step(step, step.stop_requested)
        if step.state != StepState.RUNNING:
            return
        self._enforce_runtime(step)
        self._refresh_logs_if_stale(step)
        self._charge_if_due(step)

    def _waits_for_earlier_steps(self, step: JobStep, status) -> bool:
        """Whether a submitted step that never started ended before the steps it followed did.

        Its ending is recorded once theirs are, so that it is known whether it was skipped.
        """
        if step.state != StepState.SUBMITTED or status.started_at is not None:
            return False
        steps = list(step.job.steps.order_by("index"))
        return lifecycle.runs_after_earlier_steps(steps, step) is None

    def _start_launch(self, step: JobStep, after: tuple[int, bool] | None = None):
        """The step's launch for starting it, the team's licences read once per pass."""
        key = (step.job.team_id, step.job.app_version.application_id)
        if key not in self._licences:
            self._licences[key] = environment_for(step.job.team, key[1])
        return launch_for(step, after, licences=self._licences[key])

    def _launch(self, step: JobStep):
        """The step's launch for watching it, built once per pass."""
        launch = self._launches.get(step.pk)
        if launch is None:
            launch = self._launches[step.pk] = launch_for(step, watching=True)
        return launch

    def _refresh_backends(self, active: list[JobStep]) -> None:
        """Let each backend learn the state of all its active steps in one go."""
        by_backend: dict[int, tuple[object, list]] = {}
        for step in active:
            backend = backend_for(step.job.queue)
            entry = by_backend.setdefault(id(backend), (backend, []))
            entry[1].append((self._launch(step), step.local_job_id))
        for backend, launches in by_backend.values():
            backend.refresh(launches)

    def _note_reason(self, step: JobStep, reason: str | None) -> None:
        """Note the scheduler's word on a step (such as why it still waits) for users to see."""
        reason = (reason or "")[:200]
        if reason != step.scheduler_reason:
            step.scheduler_reason = reason
            self._reasons.setdefault(reason, []).append(step.pk)

    def _save_reasons(self) -> None:
        """Save the reasons noted in this pass: one update per reason, not one per step."""
        for reason, step_ids in self._reasons.items():
            for start in range(0, len(step_ids), REASON_BATCH):
                batch = step_ids[start : start + REASON_BATCH]
                JobStep.objects.filter(pk__in=batch).update(scheduler_reason=reason)
        self._reasons = {}

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
        """Store how a step ended, with its final logs, and move the job on.

        The step's end, its charge and the job's next move are one transaction, so that a
        worker killed in between leaves the step as it was, to be recorded again.
        """
        if self._skip_if_not_due(step):
            return
        launch = self._launch(step)
        backend = backend_for(step.job.queue)
        stdout, stderr = backend.read_logs(launch, LOG_TAIL_BYTES)
        if status.state == RunState.LOST and not step.stop_requested:
            stderr += "\nepic: the step was killed before it could record its exit code.\n"
        ended = status.ended_at or timezone.now()
        outcome = {
            "exit_code": status.exit_code,
            "start": step.start or status.started_at or _start_if_ran(status, ended),
            "end": ended,
            "stdout_tail": stdout,
            "stderr_tail": stderr,
            "logs_updated": timezone.now(),
            "residuals": lifecycle.read_residuals(step, backend, launch),
            "scheduler_reason": "",
        }

        new_state = self._end_state(step, status)
        with transaction.atomic():
            step.move_to(new_state, **outcome)
            ledger.charge(step, final=True)
            self._withdraw_skipped_followers(step.job)
            lifecycle.advance(step.job)
        logger.info("Job %s: step %s %s", step.job_id, step.step_name, new_state.label)

    def _skip_if_not_due(self, step: JobStep) -> bool:
        """Mark a submitted step that ended unstarted, and must not run, as skipped."""
        if step.state != StepState.SUBMITTED or step.stop_requested:
            return False
        steps = list(step.job.steps.order_by("index"))
        if lifecycle.runs_after_earlier_steps(steps, step) is not False:
            return False
        step.move_to(StepState.SKIPPED, scheduler_reason="")
        logger.info("Job %s: step %s skipped", step.job_id, step.step_name)
        return True

    def _withdraw_skipped_followers(self, job: Job) -> None:
        """Withdraw from the scheduler the submitted steps that must not run after an ending.

        The scheduler would cancel them itself (their dependency can no longer be met); this
        records them as skipped at once, in order, so each decision sees the one before.
        """
        followers = job.steps.filter(state=StepState.SUBMITTED, start__isnull=True)
        for step in followers.select_related("job__queue__cluster", "job__app_version"):
            steps = list(job.steps.order_by("index"))
            if lifecycle.runs_after_earlier_steps(steps, step) is not False:
                continue
            backend_for(job.queue).stop(self._launch(step), step.local_job_id)
            step.move_to(StepState.SKIPPED, scheduler_reason="")
            logger.info("Job %s: step %s skipped", step.job_id, step.step_name)

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
        requests = LogRefresh.objects.filter(
            answered_at__isnull=True, step__job__worker=self.name
        ).select_related("step__job__queue__cluster", "step__job__app_version")
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
        launch = self._launch(step)
        stdout, stderr = backend_for(step.job.queue).read_logs(launch, LOG_TAIL_BYTES)
        JobStep.objects.filter(pk=step.pk).update(
            stdout_tail=stdout, stderr_tail=stderr, logs_updated=timezone.now()
        )
        self._logs_read_at[step.pk] = timezone.now()
