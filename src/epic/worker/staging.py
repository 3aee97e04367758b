"""Stage-in and stage-out: copying a job's data between the data store and its case folder."""

from __future__ import annotations

import fnmatch
import logging
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from epic.data.paths import user_prefix
from epic.data.store import InvalidKey, KeyConflict, LocalObjectStore

logger = logging.getLogger(__name__)

JOB_METADATA_SOURCE = "job"


class StagingError(RuntimeError):
    """Data could not be staged; the message is shown to the user."""


def job_dir(job_id: int) -> Path:
    """The job's own folder under EPIC_HOME/work."""
    return Path(settings.EPIC_WORK_ROOT) / f"job-{job_id}"


def case_dir(job_id: int) -> Path:
    """The folder the job's steps run in: a copy of its input folder."""
    return job_dir(job_id) / "case"


def store_prefix(job) -> str:
    """The store prefix of the job's input folder (the submitter's prefix plus the folder)."""
    return user_prefix(job.submitted_by) + job.input_path


def stage_in(job, store: LocalObjectStore) -> Path:
    """Copy the job's input folder (and its array's common folder) into a new folder.

    The copy goes into a folder of its own beside the case folder, which `install_case`
    then puts in place: an interrupted stage-in, or one by a worker that lost the job
    meanwhile, never touches the case folder the steps use. Returns the new folder.
    """
    staged = job_dir(job.pk) / f"case.staging-{secrets.token_hex(8)}"
    staged.mkdir(parents=True)
    try:
        copied = _copy_prefix(store, store_prefix(job), staged)
        if copied == 0:
            raise StagingError(f"The input folder epic://{job.input_path} is empty or missing.")
        if job.array.common_path:
            common = user_prefix(job.submitted_by) + job.array.common_path
            copied += _copy_prefix(store, common, staged / "common")
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    logger.info("Job %s: staged in %d files", job.pk, copied)
    return staged


def install_case(job_id: int, staged: Path) -> None:
    """Make a staged copy the job's case folder, replacing any earlier one.

    Copies left by interrupted stage-ins go too.
    """
    target = case_dir(job_id)
    if target.exists():
        shutil.rmtree(target)
    staged.rename(target)
    for leftover in job_dir(job_id).glob("case.staging-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def discard_staged(staged: Path) -> None:
    """Remove a staged copy that will not be used."""
    shutil.rmtree(staged, ignore_errors=True)


def _copy_prefix(store: LocalObjectStore, prefix: str, target: Path) -> int:
    """Copy every object under `prefix` to the same relative path under `target`."""
    copied = 0
    for info in store.list(prefix):
        relative = info.key[len(prefix) :]
        destination = target / relative
        if relative == "" or info.key.endswith("/"):
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.path(info.key), destination)
        copied += 1
    return copied


@dataclass(frozen=True)
class StageOutReport:
    """What stage-out sent, and the files the store refused (with the reason)."""

    sent: int
    refused: list[str]


def stage_out(job, store: LocalObjectStore, excludes: list[str]) -> StageOutReport:
    """Upload what the job wrote or changed back to its input folder.

    Files unchanged since stage-in are not sent again. Existing objects are replaced only
    when the job's config says `overwrite_existing`. Files whose names the store cannot
    hold are left in the case folder and reported.
    """
    source = case_dir(job.pk)
    if not source.exists():
        return StageOutReport(0, [])
    prefix = store_prefix(job)
    overwrite = bool(job.config.get("overwrite_existing", True))
    since = job.staged_in_at.timestamp() if job.staged_in_at else 0.0

    sent, refused = 0, []
    for path in _files_to_upload(source, excludes):
        key = prefix + path.relative_to(source).as_posix()
        try:
            sent += _upload_one(store, key, path, overwrite, since, job.pk)
        except (InvalidKey, KeyConflict) as error:
            refused.append(f"{path.relative_to(source)} ({error})")
    logger.info("Job %s: staged out %d files", job.pk, sent)
    return StageOutReport(sent, refused)


def _upload_one(store, key: str, path: Path, overwrite: bool, since: float, job_id: int) -> int:
    """Upload one result file if it is new or changed; return 1 if it was sent."""
    existing = store.head(key)
    if existing is not None and (not overwrite or path.stat().st_mtime < since):
        return 0
    store.put_file(key, path, metadata={"source": JOB_METADATA_SOURCE, "job": str(job_id)})
    return 1


def _files_to_upload(source: Path, excludes: list[str]):
    """Regular files under `source`, skipping top-level entries that match an exclude pattern."""
    for directory, folders, files in os.walk(source):
        relative_dir = Path(directory).relative_to(source)
        if relative_dir == Path("."):
            folders[:] = [name for name in folders if not _excluded(name, excludes)]
            files = [name for name in files if not _excluded(name, excludes)]
        for name in sorted(files):
            path = Path(directory) / name
            if _is_own_regular_file(path):
                yield path


def _is_own_regular_file(path: Path) -> bool:
    """A regular file with a single link: never a symlink or a hard link to a file elsewhere."""
    details = path.lstat()
    return stat.S_ISREG(details.st_mode) and details.st_nlink == 1


def _excluded(name: str, excludes: list[str]) -> bool:
    """Whether a top-level name matches one of the exclude patterns."""
    return any(fnmatch.fnmatch(name, pattern) for pattern in excludes)
