"""The contract between the job service and an application driver."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class TaskSpec:
    """One task of a job spec as the user sent it (already type-checked by the serializer)."""

    reference: str
    partitions: int = 1
    runtime: int = 1
    task_distribution: str = "core"
    tasks_per_device: int = 1
    hyperthreading: bool = True


@dataclass(frozen=True)
class Command:
    """One program run inside the case folder, as an argv list that never passes through a shell.

    When `parallel` is true the backend launches it under MPI with the step's task count
    (mpirun locally, `srun --mpi=pmix` under Slurm); the argv must not name a launcher itself.
    """

    argv: tuple[str, ...]
    parallel: bool = False


@dataclass(frozen=True)
class StepPlan:
    """What one job step runs: files to write, then commands in order, up to the first failure."""

    name: str
    commands: tuple[Command, ...]
    num_tasks: int = 1
    threads_per_task: int = 1
    max_runtime_hours: int = 1
    run_if_previous_step_fails: bool = False
    # Relative path inside the case folder -> text content, written before the first command.
    files: dict[str, str] = field(default_factory=dict)
    # Relative paths (files or folders) inside the case folder removed before the first command.
    remove: tuple[str, ...] = ()
    # Environment variables the step needs on top of the application's environment.
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResidualSeries:
    """Solver residuals: the x axis (simulation time) and one value per field per x value."""

    times: list[str]
    fields: dict[str, list[str]]


class ApplicationDriver(Protocol):
    """Turns validated app_options and tasks into step plans, and reads the solver's output."""

    def validate(self, app_options: dict, tasks: list[TaskSpec]) -> dict:
        """Return normalised options, or raise a ValidationError keyed by the option."""
        ...

    def plan_steps(self, app_options: dict, tasks: list[TaskSpec]) -> list[StepPlan]:
        """Return the steps to run, in order, for options that `validate` returned."""
        ...

    def upload_excludes(self, app_options: dict, job_failed: bool) -> list[str]:
        """Return glob patterns, relative to the case folder, that stage-out must not upload."""
        ...

    def residuals(self, step_name: str, stdout: str | Iterable[str]) -> ResidualSeries | None:
        """Return the residuals in a step's stdout (text or lines), or None if it has none."""
        ...
