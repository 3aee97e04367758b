"""The interface every compute backend implements, and the types it speaks in."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class StepLaunch:
    """Everything a backend needs to start one job step."""

    job_id: int
    step_id: int
    case_dir: Path
    step_dir: Path
    plan: dict
    num_tasks: int
    threads_per_task: int
    max_runtime_hours: int
    environment: dict[str, str]
    # The application's start_script, stop_script and environment_script (bash, may be empty).
    scripts: dict[str, str] = field(default_factory=dict)
    # The step this one waits for, where the scheduler chains steps: that step's backend id,
    # and whether this one runs after any ending of it (True) or only after a success.
    after: tuple[int, bool] | None = None
    # The team that owns the job, whose cluster account a scheduler may run the step under.
    team_id: int | None = None


class RunState(enum.Enum):
    """What a backend knows of a step it started."""

    # Handed to the scheduler, which has not started it yet (it waits for resources or for
    # the step before it).
    WAITING = "waiting"
    RUNNING = "running"
    EXITED = "exited"
    # The step's processes are gone without a recorded exit code (killed or lost in a crash).
    LOST = "lost"


@dataclass(frozen=True)
class RunStatus:
    """The backend's view of one started step."""

    state: RunState
    exit_code: int | None = None
    ended_at: datetime | None = None
    # The scheduler's own word, where it has one: why a step waits (Slurm's pending reason,
    # such as "Resources") or the state it ended in (such as "TIMEOUT").
    reason: str | None = None
    # When its processes started, where the backend knows (a scheduler may hold a step first).
    started_at: datetime | None = None


class StepBlockedError(Exception):
    """The step cannot start until an operator acts (its message says how); it stays queued."""


class SchedulerUnavailableError(Exception):
    """The scheduler did not answer: nothing can be concluded, so the worker tries again later."""


class ComputeBackend(Protocol):
    """Starts, watches and stops job steps on one cluster."""

    # True where a scheduler holds steps in its own queue: the worker then hands it all the
    # steps of a job at once, each chained to the one before (StepLaunch.after), and learns
    # when each one really starts from `status`. False where `start` runs a step at once.
    queues_steps: bool

    def capacity(self) -> int | None:
        """Cores the backend may use at once, or None where the scheduler decides."""
        ...

    def start(self, launch: StepLaunch) -> int:
        """Start a step and return its backend id (a PID or a scheduler job id)."""
        ...

    def start_many(self, launches: list[StepLaunch]) -> list[int | Exception]:
        """Start several steps at once: for each, its backend id or the error that stopped it."""
        ...

    def refresh(self, running: list[tuple[StepLaunch, int]]) -> None:
        """Learn the state of all these started steps at once, before `status` asks one by one.

        A scheduler backend makes one query for all of them here; `status` then answers from
        what this call learned.
        """
        ...

    def status(self, launch: StepLaunch, backend_id: int) -> RunStatus:
        """Report whether a started step still runs, and its exit code once it ended."""
        ...

    def stop(self, launch: StepLaunch, backend_id: int, force: bool = False) -> None:
        """Ask a step to stop (SIGTERM), or kill it when `force` is true."""
        ...

    def read_logs(self, launch: StepLaunch, limit: int) -> tuple[str, str]:
        """Return the last `limit` bytes of the step's stdout and stderr."""
        ...

    def stdout_lines(self, launch: StepLaunch):
        """Iterate over the whole stdout of a step, line by line."""
        ...
