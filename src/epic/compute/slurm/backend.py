"""The Slurm compute backend: each job step is one Slurm batch job running the step runner.

Why sbatch and squeue rather than slurmrestd: the command-line clients come with every Slurm
installation and authenticate through munge as the server's own user, so there is no extra
daemon, JWT key or token to keep. slurmrestd needs all of those, pins an API version in its
paths (Debian 12's Slurm 22.05 serves v0.0.38, which later releases drop), and stalls past
its 20 threads and 124 connections. The clients are cheap here: sbatch takes about 5 ms and
one squeue for 20 jobs about 4 ms on a one-node cluster, and the backend asks squeue once
per worker pass for all of its steps.

A step's Slurm job is tagged by its job name, `epic-step-<step id>`, and its working folder,
the step's own folder (unique to the installation's EPIC_HOME): a job is the step's only if
both match. Job ids alone are not trusted, because Slurm reuses them after a controller reset
and forgets ended jobs after MinJobAge. The tag also makes submission idempotent: before
sbatch, `start` adopts a job that already carries the step's tag.

The batch script is a few lines of Python that hand the job's SLURM_* variables to the same
step runner the local backend uses (`python3 runner.py spec.json` in the step folder), so
that `parallel` commands run under `srun --mpi=pmix` inside the job's allocation. The runner
writes the exit code and the stdout and stderr files into the step folder.

Limitation: steps run as the server's user (root, where the server runs as root), not under
a uid of their own: sbatch's --uid refuses a uid without a passwd entry, which is what
isolation gives each job.
Limitation: the step folders (EPIC_WORK_ROOT) must be on a disk the compute nodes share
with the worker, because the batch script, the logs and the exit code travel through them.
Limitation: every Slurm cluster of the catalog is the one the worker machine's Slurm client
configuration reaches; commands never name a cluster (no --clusters).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from epic.compute.base import RunState, RunStatus, StepLaunch
from epic.compute.local import (
    RUNNER_SOURCE,
    runner_spec,
    stdout_lines_of,
    tail_file,
    write_scripts,
)
from epic.compute.slurm import commands
from epic.compute.slurm.commands import (
    CommandRunner,
    SlurmError,
    SlurmJob,
    SlurmUnavailable,
    run_command,
)
from epic.compute.slurm.states import meaning_of

logger = logging.getLogger(__name__)

BATCH_SCRIPT = "batch.py"
SLURM_OUTPUT = "slurm.out"
EXECUTED_SPEC = "spec-slurm.json"
# How long what `refresh` learned answers `status` before status asks Slurm again.
STATUS_MAX_AGE = 30.0

BATCH_SCRIPT_TEMPLATE = '''#!{python}
"""Slurm batch script of EPIC step {step_id}: the step runner, given the job's Slurm variables."""
import json, os, sys

spec = json.load(open("spec.json"))
spec["environment"].update(
    (key, value) for key, value in os.environ.items() if key.startswith("SLURM_")
)
with open("{executed}.tmp", "w") as stream:
    json.dump(spec, stream)
os.replace("{executed}.tmp", "{executed}")
os.execv(sys.executable, [sys.executable, "runner.py", "{executed}"])
'''


def job_name(step_id: int) -> str:
    """The Slurm job name that tags a step's job."""
    return f"epic-step-{step_id}"


def srun_launcher(num_tasks: int, threads_per_task: int) -> list[str]:
    """srun with PMIx for the step's ranks, inside the batch job's own allocation."""
    return [
        "srun",
        "--mpi=pmix",
        f"--ntasks={num_tasks}",
        f"--cpus-per-task={threads_per_task}",
        "--kill-on-bad-exit=1",
    ]


def time_limit_minutes(max_runtime_hours: int) -> int:
    """The step's runtime limit as sbatch's --time in minutes (0 would mean no limit)."""
    return max(1, max_runtime_hours * 60)


class SlurmBackend:
    """Submits each step as one batch job to a partition and learns all their states at once."""

    def __init__(
        self, partition: str = "", cores_per_node: int = 1, run: CommandRunner = run_command
    ):
        self.partition = partition
        self.cores_per_node = max(1, cores_per_node)
        self._run = run
        self._jobs: dict[int, list[SlurmJob]] = {}
        self._asked: set[int] = set()
        self._learned_at = 0.0
        self._silence: str | None = None
        # Per job id: the scancel requests Slurm took (False: cancel, True: SIGKILL).
        self._stopped: dict[int, set[bool]] = {}

    def capacity(self) -> int | None:
        """None: Slurm decides when each step runs, so every queued step goes to it."""
        return None

    # Starting

    def start(self, launch: StepLaunch) -> int:
        """Submit the step with sbatch, unless a job with its tag exists: then adopt that job."""
        adopted = self._adopt(launch)
        if adopted is not None:
            return adopted

        self._write_step_files(launch)
        try:
            job_id = commands.submit(
                self._run, self._sbatch_options(launch), str(launch.step_dir / BATCH_SCRIPT)
            )
        except SlurmUnavailable:
            # sbatch may have queued the job and then timed out: look before giving up.
            adopted = self._adopt(launch)
            if adopted is None:
                raise
            return adopted
        logger.info("Step %s submitted as Slurm job %s", launch.step_id, job_id)
        return job_id

    def _adopt(self, launch: StepLaunch) -> int | None:
        """The id of a Slurm job already started for this step, if there is one."""
        tagged = [
            job
            for job in commands.jobs_by_name(self._run, job_name(launch.step_id))
            if job.work_dir == str(launch.step_dir)
        ]
        if len(tagged) > 1:
            logger.error("Step %s has several Slurm jobs: %s", launch.step_id, tagged)
        if tagged:
            logger.warning("Step %s: adopted Slurm job %s", launch.step_id, tagged[0].job_id)
            return tagged[0].job_id
        return _job_id_recorded_in(launch.step_dir)

    def _write_step_files(self, launch: StepLaunch) -> None:
        """Write the runner, its spec, the application's scripts and the batch script."""
        launch.step_dir.mkdir(parents=True, exist_ok=True)
        for leftover in ("exit", EXECUTED_SPEC):
            (launch.step_dir / leftover).unlink(missing_ok=True)
        (launch.step_dir / "runner.py").write_text(RUNNER_SOURCE)
        write_scripts(launch)
        launcher = srun_launcher(launch.num_tasks, max(1, launch.threads_per_task))
        spec = runner_spec(launch, launcher, reap_own_uid=False)
        (launch.step_dir / "spec.json").write_text(json.dumps(spec))
        script = BATCH_SCRIPT_TEMPLATE.format(
            python=settings.EPIC_RUNNER_PYTHON, step_id=launch.step_id, executed=EXECUTED_SPEC
        )
        (launch.step_dir / BATCH_SCRIPT).write_text(script)

    def _sbatch_options(self, launch: StepLaunch) -> list[str]:
        """sbatch's options for a step: its tag, folder, shape and time limit."""
        threads = max(1, launch.threads_per_task)
        tasks_per_node = max(1, min(launch.num_tasks, self.cores_per_node // threads))
        nodes = -(-launch.num_tasks // tasks_per_node)
        options = [
            f"--job-name={job_name(launch.step_id)}",
            f"--chdir={launch.step_dir}",
            # sbatch expands %-patterns in file names; %% is a literal %.
            f"--output={str(launch.step_dir / SLURM_OUTPUT).replace('%', '%%')}",
            f"--nodes={nodes}",
            f"--ntasks={launch.num_tasks}",
            f"--ntasks-per-node={tasks_per_node}",
            f"--cpus-per-task={threads}",
            f"--time={time_limit_minutes(launch.max_runtime_hours)}",
            # A step runs at most once; a requeued job would run its commands again.
            "--no-requeue",
        ]
        if self.partition:
            options.append(f"--partition={self.partition}")
        return options

    # Watching

    def refresh(self, running: list[tuple[StepLaunch, int]]) -> None:
        """Ask squeue about all these steps at once, and `sacct -c` about those it forgot."""
        ids = {backend_id for _, backend_id in running if backend_id is not None}
        self._jobs, self._asked, self._silence = {}, ids, None
        self._stopped = {job_id: done for job_id, done in self._stopped.items() if job_id in ids}
        self._learned_at = time.monotonic()
        if not ids:
            return
        try:
            self._learn(commands.jobs_by_id(self._run, ids))
            forgotten = [
                backend_id
                for launch, backend_id in running
                if self._job_for(launch, backend_id) is None
                and not (launch.step_dir / "exit").exists()
            ]
            self._learn(commands.finished_jobs(self._run, forgotten))
        except (SlurmUnavailable, SlurmError) as error:
            self._silence = str(error)
            logger.warning("Slurm did not report on %d steps: %s", len(ids), error)

    def _learn(self, jobs: list[SlurmJob]) -> None:
        """Remember what Slurm said about some jobs (an id may name several, once reused)."""
        for job in jobs:
            self._jobs.setdefault(job.job_id, []).append(job)

    def _job_for(self, launch: StepLaunch, backend_id: int) -> SlurmJob | None:
        """The step's own job among those Slurm reported under its id, by its tag."""
        for job in self._jobs.get(backend_id, []):
            if job.name == job_name(launch.step_id) and job.work_dir == str(launch.step_dir):
                return job
        return None

    def status(self, launch: StepLaunch, backend_id: int) -> RunStatus:
        """The step's state: from its exit file, else from what Slurm said at `refresh`."""
        stale = time.monotonic() - self._learned_at > STATUS_MAX_AGE
        if backend_id not in self._asked or stale:
            self.refresh([(launch, backend_id)])
        job = self._job_for(launch, backend_id)

        exit_file = launch.step_dir / "exit"
        if exit_file.exists():
            ended = datetime.fromtimestamp(exit_file.stat().st_mtime, tz=UTC)
            reason = _ending_word(job) if job is not None else None
            return RunStatus(RunState.EXITED, int(exit_file.read_text()), ended, reason)
        if self._silence is not None:
            return RunStatus(RunState.RUNNING, reason=f"Slurm did not answer: {self._silence}")
        if job is None:
            return RunStatus(RunState.LOST, None, datetime.now(tz=UTC))
        return _status_from_slurm(job)

    # Stopping and logs

    def stop(self, launch: StepLaunch, backend_id: int, force: bool = False) -> None:
        """Cancel the step's job (SIGTERM, SIGKILL after KillWait), and ask for SIGKILL if forced.

        Each request reaches Slurm once; one that Slurm did not take is tried at the next call.
        Limitation: a forced stop is no faster than Slurm's KillWait (30 s by default): once a
        job is cancelled Slurm refuses further signals, and it turns a SIGKILL request into its
        own SIGTERM-then-SIGKILL sequence.
        """
        done = self._stopped.setdefault(backend_id, set())
        for kill in (False, True) if force else (False,):
            if kill in done:
                continue
            try:
                commands.cancel(self._run, backend_id, job_name(launch.step_id), kill=kill)
            except (SlurmUnavailable, SlurmError) as error:
                logger.warning("Step %s: scancel failed, to be retried: %s", launch.step_id, error)
                return
            done.add(kill)
            logger.debug("Cancelled Slurm job %s (kill=%s)", backend_id, kill)

    def read_logs(self, launch: StepLaunch, limit: int) -> tuple[str, str]:
        """The tails of the step's stdout and stderr, with Slurm's own messages after stderr."""
        stderr = tail_file(launch.step_dir / "stderr", limit)
        slurm_messages = tail_file(launch.step_dir / SLURM_OUTPUT, limit)
        if slurm_messages:
            stderr = (stderr + slurm_messages)[-limit:]
        return tail_file(launch.step_dir / "stdout", limit), stderr

    def stdout_lines(self, launch: StepLaunch):
        """The step's whole stdout, one line at a time."""
        return stdout_lines_of(launch)


def _status_from_slurm(job: SlurmJob) -> RunStatus:
    """A step's status from its Slurm job alone, through the state table."""
    meaning = meaning_of(job.state)
    if meaning is None:
        return RunStatus(RunState.RUNNING, reason=job.state)
    if meaning.state == RunState.RUNNING:
        return RunStatus(RunState.RUNNING, reason=job.reason)

    code = job.exit_code
    if job.state != "COMPLETED" and not code:
        code = meaning.code_if_silent
    ended = job.ended_at or datetime.now(tz=UTC)
    return RunStatus(meaning.state, code if code is not None else 0, ended, job.state)


def _ending_word(job: SlurmJob) -> str:
    """How Slurm says a job ended: its state, or its reason while it completes ("TimeLimit")."""
    if job.state == "COMPLETING" and job.reason:
        return job.reason
    return job.state


def _job_id_recorded_in(step_dir: Path) -> int | None:
    """The Slurm job id that a batch script recorded in the step folder when it ran, if any."""
    try:
        executed = json.loads((step_dir / EXECUTED_SPEC).read_text())
        return int(executed["environment"]["SLURM_JOB_ID"])
    except (OSError, ValueError, KeyError):
        return None
