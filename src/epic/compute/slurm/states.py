"""The one table that maps Slurm's job states onto the backend's RunState."""

from __future__ import annotations

import logging
from typing import NamedTuple

from epic.compute.base import RunState

logger = logging.getLogger(__name__)

SIGTERM_CODE = 128 + 15
SIGKILL_CODE = 128 + 9


class Meaning(NamedTuple):
    """What a Slurm state means for a step.

    `code_if_silent` is the exit code to record when the job ended in this state without the
    runner's exit file and Slurm reports 0 (it does for a job cancelled while pending, and
    `sacct -c` does for every cancelled or timed-out job): a step Slurm ended must not look
    like a success.
    """

    state: RunState
    code_if_silent: int | None = None


# Slurm 22.05's job states (squeue(1), "JOB STATE CODES").
SLURM_STATES: dict[str, Meaning] = {
    # Waiting: for resources, priority, a dependency, or a hold.
    "PENDING": Meaning(RunState.WAITING),
    # Allocated; nodes are booting or being configured.
    "CONFIGURING": Meaning(RunState.RUNNING),
    "RUNNING": Meaning(RunState.RUNNING),
    # Ending: some processes of the job are still being cleaned up.
    "COMPLETING": Meaning(RunState.RUNNING),
    # Paused by an administrator or by preemption; it will go on.
    "SUSPENDED": Meaning(RunState.RUNNING),
    "STOPPED": Meaning(RunState.RUNNING),
    # Changing size, being signalled, or staging out its burst buffer.
    "RESIZING": Meaning(RunState.RUNNING),
    "SIGNALING": Meaning(RunState.RUNNING),
    "STAGE_OUT": Meaning(RunState.RUNNING),
    # Back in the queue (requeued, held after a requeue or a special exit, or a deleted
    # reservation); an administrator decides what happens next.
    "REQUEUED": Meaning(RunState.WAITING),
    "REQUEUE_HOLD": Meaning(RunState.WAITING),
    "REQUEUE_FED": Meaning(RunState.WAITING),
    "SPECIAL_EXIT": Meaning(RunState.WAITING),
    "RESV_DEL_HOLD": Meaning(RunState.WAITING),
    # Ended on its own, with exit code 0 or not.
    "COMPLETED": Meaning(RunState.EXITED),
    "FAILED": Meaning(RunState.EXITED, 1),
    # Ended by Slurm: scancel, its time limit, its deadline, or preemption (SIGTERM first).
    "CANCELLED": Meaning(RunState.EXITED, SIGTERM_CODE),
    "TIMEOUT": Meaning(RunState.EXITED, SIGTERM_CODE),
    "DEADLINE": Meaning(RunState.EXITED, SIGTERM_CODE),
    "PREEMPTED": Meaning(RunState.EXITED, SIGTERM_CODE),
    # Killed by the kernel's out-of-memory killer.
    "OUT_OF_MEMORY": Meaning(RunState.EXITED, SIGKILL_CODE),
    # Its node failed to boot or died under it.
    "BOOT_FAIL": Meaning(RunState.EXITED, SIGKILL_CODE),
    "NODE_FAIL": Meaning(RunState.EXITED, SIGKILL_CODE),
    # A federated job another cluster runs instead: this cluster never will.
    "REVOKED": Meaning(RunState.EXITED, SIGTERM_CODE),
}

_warned: set[str] = set()


def meaning_of(slurm_state: str) -> Meaning | None:
    """The meaning of a Slurm state, or None (with a warning, once) for a state not in the table.

    An unknown state comes from a newer Slurm; the caller keeps watching the step, because
    RunState has no UNKNOWN member and the worker ends a step on anything but RUNNING.
    """
    meaning = SLURM_STATES.get(slurm_state)
    if meaning is None and slurm_state not in _warned:
        _warned.add(slurm_state)
        logger.warning(
            "Unknown Slurm job state %r: the step is watched as if it still ran", slurm_state
        )
    return meaning
