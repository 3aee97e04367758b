"""The Slurm commands the backend uses: each builds an argv and parses its output into types.

Every command goes through a `CommandRunner`, the one seam between the product and Slurm, so
that a test can count the calls or inject a failure at the command boundary. Commands run
with a clean environment: variables such as SQUEUE_FORMAT or SBATCH_* in the server's own
environment would change what Slurm prints or does, and a batch job inherits the environment
of its sbatch.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from epic.compute.base import SchedulerUnavailableError

logger = logging.getLogger(__name__)

# Long enough for a busy controller (Slurm's own MessageTimeout defaults to 10 s).
COMMAND_TIMEOUT = 30.0
PASSED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ", "SLURM_CONF")
SEPARATOR = "|"
# squeue fields, in order; the working folder comes last because it may contain SEPARATOR.
SQUEUE_FIELDS = (
    "JobID",
    "Name",
    "State",
    "Reason",
    "exit_code",
    "StartTime",
    "EndTime",
    "WorkDir",
)
SACCT_FIELDS = ("jobid", "jobname", "state", "exitcode", "start", "end", "workdir")
# What Slurm's clients print when they could not reach the controller.
UNREACHABLE_MARKS = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Zero Bytes were transmitted or received",
    "Connection refused",
)
# The states in which squeue's StartTime is only the scheduler's expectation.
WAITING_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SPECIAL_EXIT"}
# What scancel prints for a job that has ended already: nothing is left to stop.
GONE_MARKS = ("Invalid job id specified", "already completing or completed")


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned and printed."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


class CommandRunner(Protocol):
    """Runs one command; raises subprocess.TimeoutExpired when it outlives `timeout`."""

    def __call__(self, argv: list[str], timeout: float) -> CommandResult: ...


class SlurmError(RuntimeError):
    """A Slurm command refused or failed; the message carries its exit code and stderr."""

    def __init__(self, result: CommandResult):
        super().__init__(
            f"{result.argv[0]} failed with exit code {result.returncode}: "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
        self.result = result


class SlurmUnavailable(SchedulerUnavailableError):  # noqa: N818 (a state, not a failed call)
    """Slurm did not answer (no client, no controller, or a timeout): nothing can be concluded.

    Deliberately not a RuntimeError: the worker fails a step whose start raises one, but a
    step whose scheduler did not answer must stay queued and be tried again.
    """


@dataclass(frozen=True)
class SlurmJob:
    """One Slurm job as squeue or `sacct -c` reports it."""

    job_id: int
    name: str
    state: str
    reason: str | None
    # Shell-style: the batch script's exit status, or 128 + N when signal N ended it.
    exit_code: int | None
    ended_at: datetime | None
    work_dir: str
    # When it started running (None while it waits: Slurm prints an expected time then).
    started_at: datetime | None = None


@dataclass(frozen=True)
class Partition:
    """A Slurm partition and the shape of its smallest node."""

    name: str
    available: bool
    time_limit_minutes: int | None
    nodes: int
    cpus_per_node: int
    sockets: int
    cores_per_socket: int
    threads_per_core: int
    memory_mb: int


@dataclass(frozen=True)
class Node:
    """A Slurm node and its state."""

    name: str
    state: str
    cpus: int
    memory_mb: int
    partitions: str


def run_command(argv: list[str], timeout: float) -> CommandResult:
    """Run a command with the clean environment and capture what it prints.

    The command is spawned (posix_spawn), not forked: forking copies the page tables of the
    whole server, which costs more than the Slurm command itself. Every file descriptor the
    server opens is non-inheritable, so none reaches the command.
    """
    environment = {key: os.environ[key] for key in PASSED_ENVIRONMENT if key in os.environ}
    environment.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    # What sbatch creates for a job (its output file) is for the job's owner alone.
    environment["SLURM_UMASK"] = "0077"
    completed = subprocess.run(
        [_executable(argv[0], environment["PATH"]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        stdin=subprocess.DEVNULL,
        check=False,
        close_fds=False,
    )
    return CommandResult(argv, completed.returncode, completed.stdout, completed.stderr)


@functools.lru_cache(maxsize=64)
def _found(command: str, path: str) -> str | None:
    """Where `command` is on `path`, remembered once found."""
    return shutil.which(command, path=path)


def _executable(command: str, path: str) -> str:
    """The full path of a command (posix_spawn needs one); FileNotFoundError if there is none."""
    found = _found(command, path)
    if found is None:
        _found.cache_clear()  # a command installed later is looked for again
        raise FileNotFoundError(command)
    return found


def call(run: CommandRunner, argv: list[str], ok_marks: Iterable[str] = ()) -> CommandResult:
    """Run a Slurm command through the seam; raise SlurmUnavailable or SlurmError on failure.

    A non-zero exit whose stderr holds one of `ok_marks` counts as an answer, not a failure.
    """
    try:
        result = run(argv, COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired as error:
        logger.debug("%s timed out after %ss", argv[0], COMMAND_TIMEOUT)
        raise SlurmUnavailable(f"{argv[0]} did not answer within {COMMAND_TIMEOUT:g}s") from error
    except FileNotFoundError as error:
        raise SlurmUnavailable(f"{argv[0]} is not installed on this machine") from error

    logger.debug(
        "%s exited %d: %s %s",
        " ".join(argv),
        result.returncode,
        result.stdout.strip()[:500],
        result.stderr.strip()[:500],
    )
    if result.returncode == 0 or any(mark in result.stderr for mark in ok_marks):
        return result
    if any(mark in result.stderr for mark in UNREACHABLE_MARKS):
        raise SlurmUnavailable(f"{argv[0]}: {result.stderr.strip()}")
    raise SlurmError(result)


# sbatch


def submit(run: CommandRunner, options: list[str], script: str) -> int:
    """Submit a batch script with `sbatch` and return the new job's id."""
    result = call(run, ["sbatch", "--parsable", *options, script])
    # --parsable prints "ID" or "ID;CLUSTER".
    return int(result.stdout.strip().split(";")[0])


# squeue


def jobs_by_id(run: CommandRunner, job_ids: Iterable[int]) -> list[SlurmJob]:
    """The jobs among `job_ids` that the controller still remembers, in one squeue call."""
    ids = sorted(set(job_ids))
    if not ids:
        return []
    argv = _squeue_argv(f"--jobs={','.join(map(str, ids))}")
    # With a single forgotten id, squeue fails; with several it leaves the forgotten out.
    result = call(run, argv, ok_marks=("Invalid job id specified",))
    return _parse_squeue(result.stdout)


def jobs_by_name(run: CommandRunner, name: str, user: int) -> list[SlurmJob]:
    """Every job of a user (by uid) the controller remembers under a job name, in one squeue."""
    result = call(run, [*_squeue_argv(f"--name={name}"), f"--user={user}"])
    return _parse_squeue(result.stdout)


def _squeue_argv(selection: str) -> list[str]:
    """squeue for the selected jobs in every state, one SEPARATOR-separated line per job."""
    fields = ",".join(f"{field}:{SEPARATOR}" for field in SQUEUE_FIELDS)
    return ["squeue", "--noheader", "--states=all", selection, f"--Format={fields}"]


def _parse_squeue(stdout: str) -> list[SlurmJob]:
    """Jobs from squeue lines in SQUEUE_FIELDS order."""
    jobs = []
    for line in stdout.splitlines():
        # Each field ends with SEPARATOR, the last one too.
        parts = line.removesuffix(SEPARATOR).split(SEPARATOR, len(SQUEUE_FIELDS) - 1)
        if len(parts) < len(SQUEUE_FIELDS) or not parts[0].strip().isdigit():
            continue
        job_id, name, state, reason, status, start, end, work_dir = parts
        state = _base_state(state)
        jobs.append(
            SlurmJob(
                job_id=int(job_id),
                name=name.strip(),
                state=state,
                reason=None if reason.strip() in ("", "None", "(null)") else reason.strip(),
                exit_code=_wait_status_code(status),
                ended_at=_timestamp(end),
                work_dir=work_dir,
                started_at=None if state in WAITING_STATES else _timestamp(start),
            )
        )
    return jobs


# sacct -c


def finished_jobs(run: CommandRunner, job_ids: Iterable[int]) -> list[SlurmJob]:
    """Ended jobs from the job completion log (`sacct -c`), for jobs squeue has forgotten.

    A reused job id appears once for each job that had it.

    Limitation: that log cuts a working folder at its first space, and records 0:0 as the
    exit code of a cancelled or timed-out job.
    """
    ids = sorted(set(job_ids))
    if not ids:
        return []
    argv = [
        "sacct",
        "--completion",
        "--noheader",
        "--parsable2",
        f"--jobs={','.join(map(str, ids))}",
        f"--format={','.join(SACCT_FIELDS)}",
    ]
    jobs = []
    for line in call(run, argv).stdout.splitlines():
        parts = line.split(SEPARATOR, len(SACCT_FIELDS) - 1)
        if len(parts) < len(SACCT_FIELDS) or not parts[0].isdigit():
            continue
        job_id, name, state, exit_code, start, end, work_dir = parts
        jobs.append(
            SlurmJob(
                job_id=int(job_id),
                name=name,
                state=_base_state(state),
                reason=None,
                exit_code=_colon_code(exit_code),
                ended_at=_timestamp(end),
                work_dir=work_dir,
                started_at=_timestamp(start),
            )
        )
    return jobs


# scancel


def cancel(run: CommandRunner, job_id: int, name: str, kill: bool = False) -> None:
    """Cancel a job (SIGTERM, then SIGKILL after Slurm's KillWait), or SIGKILL it at once.

    The job name must match too, so that a job id Slurm has since reused is left alone.
    """
    argv = ["scancel", f"--name={name}"]
    if kill:
        argv += ["--signal=KILL", "--full"]
    call(run, [*argv, str(job_id)], ok_marks=GONE_MARKS)


# sinfo and scontrol


def partitions(run: CommandRunner) -> list[Partition]:
    """The partitions, each with the shape of its smallest node and its node count."""
    fields = ("%R", "%a", "%l", "%D", "%c", "%X", "%Y", "%Z", "%m")
    argv = ["sinfo", "--noheader", f"--format={SEPARATOR.join(fields)}"]
    found: dict[str, Partition] = {}
    for line in call(run, argv).stdout.splitlines():
        parts = line.strip().split(SEPARATOR)
        if len(parts) != len(fields):
            continue
        partition = _partition(parts)
        found[partition.name] = _merge(found.get(partition.name), partition)
    return list(found.values())


def _partition(parts: list[str]) -> Partition:
    """One sinfo line (a partition's group of alike nodes) as a Partition."""
    name, available, limit, nodes, cpus, sockets, cores, threads, memory = parts
    return Partition(
        name=name,
        available=available == "up",
        time_limit_minutes=_minutes(limit),
        nodes=_number(nodes),
        cpus_per_node=_number(cpus),
        sockets=_number(sockets),
        cores_per_socket=_number(cores),
        threads_per_core=_number(threads),
        memory_mb=_number(memory),
    )


def _merge(known: Partition | None, more: Partition) -> Partition:
    """A partition seen on several sinfo lines: its nodes added, its smallest node kept."""
    if known is None:
        return more
    smaller = known if known.cpus_per_node <= more.cpus_per_node else more
    return replace(smaller, nodes=known.nodes + more.nodes)


def nodes(run: CommandRunner) -> list[Node]:
    """The nodes, their states, CPUs, memory and partitions."""
    fields = ("%N", "%T", "%c", "%m", "%P")
    argv = ["sinfo", "--noheader", "--Node", f"--format={SEPARATOR.join(fields)}"]
    found: dict[str, Node] = {}
    for line in call(run, argv).stdout.splitlines():
        parts = line.strip().split(SEPARATOR)
        if len(parts) != len(fields):
            continue
        name, state, cpus, memory, partition = parts
        partition_names = f"{found[name].partitions},{partition}" if name in found else partition
        found[name] = Node(name, state, _number(cpus), _number(memory), partition_names)
    return list(found.values())


def ping(run: CommandRunner) -> str:
    """The controller's answer to `scontrol ping` (for example "Slurmctld(primary) at x is UP")."""
    return call(run, ["scontrol", "ping"]).stdout.strip()


# Parsing helpers


def _base_state(state: str) -> str:
    """A job state without decorations such as "CANCELLED by 0"."""
    return state.split()[0].upper() if state.strip() else ""


def _wait_status_code(status: str) -> int | None:
    """A shell-style exit code from a raw wait status as squeue prints it."""
    if not status.strip().isdigit():
        return None
    value = int(status)
    signal_number = value & 0x7F
    return 128 + signal_number if signal_number else value >> 8


def _colon_code(exit_code: str) -> int | None:
    """A shell-style exit code from Slurm's "STATUS:SIGNAL" form."""
    status, _, signal_number = exit_code.partition(":")
    if not (status.isdigit() and signal_number.isdigit()):
        return None
    return 128 + int(signal_number) if int(signal_number) else int(status)


def _timestamp(text: str) -> datetime | None:
    """An aware time from Slurm's local ISO time, or None for "NONE", "Unknown" and the like."""
    try:
        return datetime.fromisoformat(text.strip()).astimezone()
    except ValueError:
        return None


def _minutes(limit: str) -> int | None:
    """Minutes from a time limit as sinfo prints it, or None where there is none ("infinite")."""
    if not limit[:1].isdigit():
        return None
    days, _, clock = limit.rpartition("-")
    parts = [int(part) for part in clock.split(":")]
    # After any DAYS-, sinfo prints MINUTES, MINUTES:SECONDS or HOURS:MINUTES:SECONDS.
    if len(parts) == 1:
        parts = [0, parts[0], 0]
    hours, minutes, seconds = [0] * (3 - len(parts)) + parts
    return int(days or 0) * 24 * 60 + hours * 60 + minutes + (1 if seconds else 0)


def _number(text: str) -> int:
    """An integer from sinfo, where a range such as "2+" or "1-4" counts as its first value."""
    digits = ""
    for character in text:
        if not character.isdigit():
            break
        digits += character
    return int(digits or 0)
