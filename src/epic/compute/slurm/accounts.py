"""The cluster accounts that a team's Slurm jobs run under, so that teams cannot read each other.

Where jobs are isolated (EPIC_ISOLATE_JOBS, on when the server runs as root), every Slurm job
of a team runs under that team's own account, a prefix followed by the team's id: by default
`epic-<installation id>-t` (such as `epic-388b399b-t7`), so that two installations sharing a
cluster never share an account, or EPIC_SLURM_ACCOUNT_PREFIX where the operator sets one.
sbatch, run as root, hands the job to the account with --uid and --gid. The
account must exist on the machine that runs sbatch and on every node, with the same uid: on a
site whose accounts come from a directory (LDAP, say), the operator creates them there; on a
cluster of this machine alone, `epic admin cluster accounts --create` creates them locally.
A step of a team without an account waits, saying so, until the account exists.
"""

from __future__ import annotations

import logging
import pwd
import subprocess
from dataclasses import dataclass

from django.conf import settings

from epic.compute.base import StepBlockedError
from epic.compute.remote import installation_id

logger = logging.getLogger(__name__)

# How long useradd may take to create one account.
USERADD_TIMEOUT = 30.0


@dataclass(frozen=True)
class Account:
    """The Unix user and group a team's Slurm jobs run under."""

    name: str
    uid: int
    gid: int


class MissingAccountError(StepBlockedError):
    """The team has no cluster account on this machine yet."""


def account_name(team_id: int) -> str | None:
    """The account a team's Slurm jobs run under, or None where they run as the server's user."""
    if not settings.EPIC_ISOLATE_JOBS:
        return None
    prefix = settings.EPIC_SLURM_ACCOUNT_PREFIX or f"epic-{installation_id()}-t"
    return f"{prefix}{team_id}"


def account_of(team_id: int) -> Account | None:
    """The team's account as this machine knows it; None where jobs run as the server's user.

    Raises MissingAccountError when the account should exist but this machine has no such user.
    """
    name = account_name(team_id)
    if name is None:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise MissingAccountError(
            f"Waiting for the cluster account {name} of this team: the operator creates it "
            "(on a cluster of this machine alone: epic admin cluster accounts --create)."
        ) from None
    return Account(name, entry.pw_uid, entry.pw_gid)


def exists(name: str) -> bool:
    """Whether this machine has a user of that name."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def create(name: str) -> None:
    """Create a user of that name with a group of its own, no home and no login shell.

    Raises OSError when useradd fails or cannot run.
    """
    argv = [
        "useradd",
        # A regular uid: system uids (below 1000) are too few for the teams of a platform.
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "EPIC team account",
        name,
    ]
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=USERADD_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise OSError(f"useradd {name} failed: {error}") from error
    if completed.returncode != 0 and not exists(name):
        raise OSError(f"useradd {name} failed: {completed.stderr.strip()}")
    logger.info("Created the cluster account %s", name)
