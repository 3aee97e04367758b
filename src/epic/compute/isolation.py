"""Running a job's processes under a uid of its own, so that jobs cannot read each other.

Used when the server runs as root. Each job gets the uid (and gid) EPIC_JOB_UID_BASE + job id;
the uid needs no entry in /etc/passwd. Its case folder and step folders belong to that uid,
the server's own state stays readable by root only, and every process of the uid is killed
when its step ends, so nothing a job starts outlives it.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

# Folders a job's uid must be able to pass through (but not list) to reach its case folder.
TRAVERSE_ONLY = 0o711


def job_uid(job_id: int) -> int | None:
    """The uid a job's processes run under, or None when jobs run as the server's user."""
    if not settings.EPIC_ISOLATE_JOBS:
        return None
    return settings.EPIC_JOB_UID_BASE + job_id


class UnreachableHomeError(RuntimeError):
    """A folder above EPIC_HOME keeps job uids from reaching their case folders."""


def check_reachable(folder: Path) -> None:
    """Refuse a folder that a job uid could not reach: every ancestor needs o+x."""
    closed = [str(up) for up in folder.resolve().parents if not up.stat().st_mode & 0o001]
    if closed:
        listed = " ".join(reversed(closed))
        raise UnreachableHomeError(
            f"Jobs run under their own uids and cannot pass through {listed}: choose an "
            f"EPIC_HOME elsewhere, or allow passing with `chmod o+x {listed}`."
        )


def open_home() -> None:
    """Let job uids pass through (not list) EPIC_HOME and its work folder, made if missing.

    Raises UnreachableHomeError where a folder above EPIC_HOME keeps them out.
    """
    for folder in (Path(settings.EPIC_HOME), Path(settings.EPIC_WORK_ROOT)):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(folder.stat().st_mode & 0o777 | TRAVERSE_ONLY)
    check_reachable(Path(settings.EPIC_HOME))


def hand_over(case_dir: Path, step_dir: Path, uid: int) -> None:
    """Give the job's uid its case folder and step folder, and a way to reach them."""
    check_reachable(Path(settings.EPIC_WORK_ROOT))
    for folder in (Path(settings.EPIC_HOME), Path(settings.EPIC_WORK_ROOT), case_dir.parent):
        mode = folder.stat().st_mode & 0o777
        folder.chmod(mode | TRAVERSE_ONLY)
    case_dir.parent.joinpath("steps").mkdir(mode=TRAVERSE_ONLY, exist_ok=True)
    case_dir.parent.joinpath("steps").chmod(TRAVERSE_ONLY)

    if case_dir.stat().st_uid != uid:
        # First step of the job: nothing may run as its uid yet (a reused id's leftovers).
        kill_all_processes_of(uid)
        _chown_tree(case_dir, uid)
    _chown_tree(step_dir, uid)


def _chown_tree(root: Path, uid: int) -> None:
    """Make `uid` the owner of a folder and everything in it, never following links."""
    os.chown(root, uid, uid, follow_symlinks=False)
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            os.chown(os.path.join(folder, name), uid, uid, follow_symlinks=False)


def kill_all_processes_of(uid: int) -> int:
    """Kill every process running as `uid` (a job's own uid); return how many were signalled."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or _owner_of(entry) != uid:
            continue
        try:
            os.kill(int(entry.name), signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            continue
    if killed:
        logger.debug("Killed %d leftover processes of uid %d", killed, uid)
    return killed


def _owner_of(process_dir: Path) -> int | None:
    """The real uid of a process, from /proc/PID/status, or None if it is gone."""
    try:
        for line in (process_dir / "status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None
