"""The Slurm compute backend: each job step is one Slurm batch job running the step runner.

Why sbatch and squeue rather than slurmrestd: the command-line clients come with every Slurm
installation and authenticate through munge as the server's own user, so there is no extra
daemon, JWT key or token to keep. slurmrestd needs all of those, pins an API version in its
paths (Debian 12's Slurm 22.05 serves v0.0.38, which later releases drop), and stalls past
its 20 threads and 124 connections. The clients are cheap here: sbatch takes about 5 ms and
one squeue for 20 jobs about 4 ms on a one-node cluster, and the backend asks squeue once
per worker pass for all of its steps.

A step's Slurm job is tagged by its job name, `epic-<installation id>-step-<step id>`, where
the installation id is derived from the server's SECRET_KEY (`epic.compute.remote`): a job is
the step's only if its name matches. Job ids alone are not trusted, because Slurm reuses them
after a controller reset and forgets ended jobs after MinJobAge. The tag also makes submission
idempotent: before sbatch, `start` adopts a job that already carries the step's tag, or the
job id the step's wrapper reported when it first ran.

Compute nodes share no disk with the server. The batch script is the wrapper
(`epic.compute.slurm.wrapper`) with the step's settings: the API URL (EPIC_API_URL), the step's
one-time bootstrap token and the node's scratch root (EPIC_SLURM_SCRATCH), which is also the
job's working folder and holds its Slurm output file. On the node, the wrapper downloads from
the server's step I/O endpoint the bundle this backend prepares in the server-side step folder
(the same step runner the local backend uses, its spec and the application's scripts) and the
job's case folder, runs the runner in a scratch folder of its own, so that `parallel` commands
run under `srun --mpi=pmix` inside the job's allocation, and pushes the stdout, stderr and
Slurm output back while it runs; at the end it sends the case folder back, then the exit code.
The endpoint writes them where the local backend's runner would (stdout, stderr, exit in the
step folder), so watching a step and reading its logs work on the server's own disk.

Where jobs are isolated (EPIC_ISOLATE_JOBS), each step runs under its team's cluster account
(see accounts.py), so that a team's job can read neither the files nor the batch scripts of
another team's jobs; sbatch runs with umask 077, so the Slurm output file is its owner's alone.
Limitation: the steps of one team share its account, so a job can read the batch script of a
teammate's job, whose bootstrap token is one-time and bound to that step's Slurm job id:
useless once that step's wrapper has started, but a job that reads it and wins the race
before the step's wrapper starts could act as that step, within the same team.
Limitation: where jobs are not isolated, every step runs as the server's user, and any job
can read the others.
Limitation: the case folder is copied to the first node of a step's allocation only: the
ranks of a parallel command on other nodes find it only if EPIC_SLURM_SCRATCH is a folder the
nodes share.
Limitation: the whole case folder travels to the node and back at every step, however little
of it the step reads or changes.
Limitation: every Slurm cluster of the catalog is the one the worker machine's Slurm client
configuration reaches; commands never name a cluster (no --clusters).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from epic.compute.base import RunState, RunStatus, StepLaunch
from epic.compute.local import stdout_lines_of, tail_file
from epic.compute.remote import (
    EXIT_FILE,
    LOG_FILES,
    NODE_PATH_KEYS,
    SCHEDULER_JOB_FILE,
    SESSION_FILE,
    installation_id,
    recorded_scheduler_job,
    step_token,
    write_bundle,
)
from epic.compute.slurm import accounts, commands, wrapper
from epic.compute.slurm.accounts import Account
from epic.compute.slurm.commands import (
    CommandRunner,
    SlurmError,
    SlurmJob,
    SlurmUnavailable,
    run_command,
)
from epic.compute.slurm.states import meaning_of

logger = logging.getLogger(__name__)

# The batch script as sbatch reads it on the server; its content is what reaches the node.
BATCH_SCRIPT = "batch.py"
# The server-side copy of the Slurm output file, which the wrapper pushes.
SLURM_OUTPUT = LOG_FILES["scheduler"]
# How long what `refresh` learned answers `status` before status asks Slurm again.
STATUS_MAX_AGE = 30.0
# How often squeue is asked about steps it was asked about already: a step's ending comes
# from its exit file, pushed by the node, so this only delays seeing a start or a loss.
REFRESH_SECONDS = 3.0
# What earlier versions wrote in the step folder before sbatch, besides the batch script.
EARLIER_MARK = "submitting"
# How many sbatch calls run at once when many steps start together.
SBATCH_THREADS = 4
WRAPPER_SOURCE = Path(wrapper.__file__).read_text()
# How often the wrapper pushes new log bytes, and how long it retries an unreachable server.
PUSH_SECONDS = 2.0
RETRY_SECONDS = 300.0
# Environment variables of the runner spec that name the step's case folder.
CASE_VARIABLES = ("HOME", "PWD")


def job_name(step_id: int) -> str:
    """The Slurm job name that tags a step's job, unique to this installation."""
    return f"epic-{installation_id()}-step-{step_id}"


def slurm_output(step_id: int, nonce: str) -> str:
    """The Slurm output file of a step's job, in the node's scratch root.

    Its name holds a nonce of each submission's own: other users of the nodes may create
    files in the scratch root, and must not be able to guess the name and plant one first.
    """
    return str(Path(settings.EPIC_SLURM_SCRATCH) / f"{job_name(step_id)}-{nonce}.out")


def batch_script(launch: StepLaunch, output: str) -> str:
    """The wrapper's source followed by the step's settings and the call that runs it."""
    if not settings.EPIC_API_URL:
        raise RuntimeError("EPIC_API_URL is not set: Slurm steps need the server's address.")
    step = {
        "api_url": settings.EPIC_API_URL,
        "step_id": launch.step_id,
        "token": step_token(launch.job_id, launch.step_id),
        "scratch_root": settings.EPIC_SLURM_SCRATCH,
        "scheduler_output": output,
        "push_seconds": PUSH_SECONDS,
        "retry_seconds": RETRY_SECONDS,
        "path_keys": list(NODE_PATH_KEYS),
        "case_variables": list(CASE_VARIABLES),
    }
    # The output file goes in the script, not on sbatch's command line, which every user of
    # the machine can read: its nonce must stay secret until the file exists. sbatch expands
    # %-patterns in file names; %% is a literal %.
    directive = f"#SBATCH --output={json.dumps(output.replace('%', '%%'))}"
    return (
        f"#!{settings.EPIC_RUNNER_PYTHON}\n{directive}\n{WRAPPER_SOURCE}\n\n"
        f"# EPIC step {launch.step_id}\nSTEP = json.loads({json.dumps(step)!r})\n"
        "sys.exit(main(STEP))\n"
    )


def srun_launcher(num_tasks: int, threads_per_task: int) -> list[str]:
    """srun with PMIx for the step's ranks, inside the batch job's own allocation."""
    return [
        "srun",
        "--mpi=pmix",
        f"--ntasks={num_tasks}",
        f"--cpus-per-task={threads_per_task}",
        "--kill-on-bad-exit=1",
    ]


def dependency_options(after: tuple[int, bool] | None) -> list[str]:
    """sbatch's options that chain a step to the one before it.

    afterok waits for a success, afterany for any ending; a step whose dependency can no
    longer be met (the step before failed) is cancelled by Slurm rather than left pending.
    """
    if after is None:
        return []
    job_id, after_any = after
    kind = "afterany" if after_any else "afterok"
    return [f"--dependency={kind}:{job_id}", "--kill-on-invalid-dep=yes"]


def time_limit_minutes(max_runtime_hours: int) -> int:
    """The step's runtime limit as sbatch's --time in minutes (0 would mean no limit)."""
    return max(1, max_runtime_hours * 60)


class SlurmBackend:
    """Submits each step as one batch job to a partition and learns all their states at once."""

    queues_steps = True

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
        """Submit the step with sbatch, or adopt the Slurm job an earlier attempt queued.

        The batch script, written to disk durably before sbatch runs, marks the step. Only a
        marked step can already have a Slurm job (its worker died, or sbatch timed out, after
        queuing it), so only then is Slurm asked for a job with the step's tag.
        """
        account = accounts.account_of(launch.team_id) if launch.team_id is not None else None
        script = launch.step_dir / BATCH_SCRIPT
        if script.exists() or (launch.step_dir / EARLIER_MARK).exists():
            adopted = self._adopt(launch, account)
            if adopted is not None:
                return adopted

        output = slurm_output(launch.step_id, secrets.token_hex(8))
        self._write_step_files(launch, output)
        try:
            options = self._sbatch_options(launch) + _account_options(account)
            job_id = commands.submit(self._run, options, str(script))
        except SlurmUnavailable:
            # sbatch may have queued the job and then timed out: look before giving up.
            adopted = self._adopt(launch, account)
            if adopted is None:
                raise
            return adopted
        logger.info("Step %s submitted as Slurm job %s", launch.step_id, job_id)
        return job_id

    def start_many(self, launches: list[StepLaunch]) -> list[int | Exception]:
        """Start several steps, SBATCH_THREADS sbatch calls at a time: an id or error each."""
        with ThreadPoolExecutor(SBATCH_THREADS, thread_name_prefix="epic-sbatch") as pool:
            futures = [pool.submit(self.start, launch) for launch in launches]
        return [_outcome(future) for future in futures]

    def _adopt(self, launch: StepLaunch, account: Account | None) -> int | None:
        """The id of a Slurm job already started for this step, if there is one.

        Only a job of the user this backend submits the step as counts: anyone may give a job
        of their own the step's name.
        """
        owner = account.uid if account is not None else os.getuid()
        tagged = commands.jobs_by_name(self._run, job_name(launch.step_id), owner)
        if len(tagged) > 1:
            logger.error("Step %s has several Slurm jobs: %s", launch.step_id, tagged)
        if tagged:
            logger.warning("Step %s: adopted Slurm job %s", launch.step_id, tagged[0].job_id)
            return tagged[0].job_id
        return recorded_scheduler_job(launch.step_dir)

    def _write_step_files(self, launch: StepLaunch, output: str) -> None:
        """Write the bundle the node downloads, then the batch script for sbatch, durably.

        Nothing of a previous submission ran (none was adopted), so what it left is removed.
        """
        try:
            launch.step_dir.mkdir(parents=True)
        except FileExistsError:
            for leftover in (EXIT_FILE, SCHEDULER_JOB_FILE, SESSION_FILE, *LOG_FILES.values()):
                (launch.step_dir / leftover).unlink(missing_ok=True)
        launcher = srun_launcher(launch.num_tasks, max(1, launch.threads_per_task))
        write_bundle(launch, launcher)
        _write_durably(launch.step_dir / BATCH_SCRIPT, batch_script(launch, output))

    def _sbatch_options(self, launch: StepLaunch) -> list[str]:
        """sbatch's options for a step: its tag, folder, shape and time limit.

        Its output file is named in the batch script (see batch_script).
        """
        threads = max(1, launch.threads_per_task)
        tasks_per_node = max(1, min(launch.num_tasks, self.cores_per_node // threads))
        nodes = -(-launch.num_tasks // tasks_per_node)
        options = [
            f"--job-name={job_name(launch.step_id)}",
            # The node's scratch root: it exists on every node; no server path goes to Slurm.
            f"--chdir={settings.EPIC_SLURM_SCRATCH}",
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
        return options + dependency_options(launch.after)

    # Watching

    def refresh(self, running: list[tuple[StepLaunch, int]]) -> None:
        """Ask squeue about all these steps at once, and `sacct -c` about those it forgot.

        Steps asked about less than REFRESH_SECONDS ago are not asked about again, so that the
        calls per minute stay flat however often the worker passes.
        """
        ids = {backend_id for _, backend_id in running if backend_id is not None}
        if ids <= self._asked and time.monotonic() - self._learned_at < REFRESH_SECONDS:
            return
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

    def _latest(self, launch: StepLaunch, backend_id: int, job: SlurmJob | None):
        """The step's job as Slurm sees it now, where what `refresh` learned may be older.

        Asked once for a step whose exit code arrived, so that how Slurm ended it (such as its
        time limit) is not read from a state learned before the end.
        """
        meaning = meaning_of(job.state) if job is not None else None
        if meaning is not None and meaning.state == RunState.EXITED:
            return job
        try:
            fresh = commands.jobs_by_id(self._run, [backend_id])
        except (SlurmUnavailable, SlurmError):
            return job
        self._jobs[backend_id] = fresh
        return self._job_for(launch, backend_id) or job

    def _learn(self, jobs: list[SlurmJob]) -> None:
        """Remember what Slurm said about some jobs (an id may name several, once reused)."""
        for job in jobs:
            self._jobs.setdefault(job.job_id, []).append(job)

    def _job_for(self, launch: StepLaunch, backend_id: int) -> SlurmJob | None:
        """The step's own job among those Slurm reported under its id, by its tag."""
        for job in self._jobs.get(backend_id, []):
            if job.name == job_name(launch.step_id):
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
            job = self._latest(launch, backend_id, job)
            reason = _ending_word(job) if job is not None else None
            started = job.started_at if job is not None else None
            code = int(exit_file.read_text())
            return RunStatus(RunState.EXITED, code, ended, reason, started_at=started)
        if self._silence is not None:
            return RunStatus(RunState.WAITING, reason=f"Slurm did not answer: {self._silence}")
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
        """The tails of the step's stdout and stderr, with Slurm's own messages after stderr.

        All three are the server-side copies that the step's wrapper pushes while it runs.
        """
        stderr = tail_file(launch.step_dir / "stderr", limit)
        slurm_messages = tail_file(launch.step_dir / SLURM_OUTPUT, limit)
        if slurm_messages:
            stderr = (stderr + slurm_messages)[-limit:]
        return tail_file(launch.step_dir / "stdout", limit), stderr

    def stdout_lines(self, launch: StepLaunch):
        """The step's whole stdout, one line at a time."""
        return stdout_lines_of(launch)


def _write_durably(path: Path, text: str) -> None:
    """Write a small file and flush it to disk, so that it outlives a crash of the machine."""
    with open(path, "w") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())


def _account_options(account: Account | None) -> list[str]:
    """sbatch's options that run a job under a team's account (sbatch runs as root then)."""
    if account is None:
        return []
    # Without --gid the job would keep root's group.
    return [f"--uid={account.uid}", f"--gid={account.gid}"]


def _outcome(future) -> int | Exception:
    """What one start in a batch gave: the Slurm job id, or the error it raised."""
    try:
        return future.result()
    except Exception as error:  # each start's error goes back to its caller
        return error


def _status_from_slurm(job: SlurmJob) -> RunStatus:
    """A step's status from its Slurm job alone, through the state table."""
    meaning = meaning_of(job.state)
    if meaning is None:
        return RunStatus(RunState.WAITING, reason=job.state)
    if meaning.state in (RunState.WAITING, RunState.RUNNING):
        return RunStatus(meaning.state, reason=job.reason, started_at=job.started_at)

    code = job.exit_code
    if job.state != "COMPLETED" and not code:
        code = meaning.code_if_silent
    ended = job.ended_at or datetime.now(tz=UTC)
    code = code if code is not None else 0
    return RunStatus(meaning.state, code, ended, job.state, started_at=job.started_at)


def _ending_word(job: SlurmJob) -> str:
    """How Slurm says a job ended: its state, or its reason while it completes ("TimeLimit")."""
    if job.state == "COMPLETING" and job.reason:
        return job.reason
    return job.state
