"""Step I/O: how a step on a compute node that shares no disk with the server reads and writes.

The node's wrapper calls the internal endpoint (`epic.worker.stepio_views`) with the step's
token; this module does the work. It serves the bundle a backend prepared and the job's case
folder as tar streams, appends pushed log bytes at their offsets to the server-side step
folder's files, takes the case folder back as a tar uploaded in parts, and records the exit
code last, exactly where the step runner would have written it on a shared disk. Every file it
writes lies in the folders of the job the token names; their names come from the ids, never
from the request.

Limitation: the token travels in clear unless EPIC_API_URL is an https address (a proxy in
front of the server); the endpoint itself speaks plain HTTP, like the rest of the API.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError
from rest_framework import exceptions, status

from epic.compute.remote import (
    BUNDLE_FOLDER,
    EXIT_FILE,
    LOG_FILES,
    SCHEDULER_JOB_FILE,
    step_token,
)
from epic.jobs.models import JobStep
from epic.jobs.states import ACTIVE_STEP_STATES, StepState
from epic.worker.staging import case_dir, job_dir

logger = logging.getLogger(__name__)

# What one request may carry: a piece of log, a part of the case archive, or a short value.
LOG_PART_MAX_BYTES = 1024 * 1024
CASE_PART_MAX_BYTES = 16 * 1024 * 1024
VALUE_MAX_BYTES = 1024
# Room the server keeps free on its disk whatever a step sends.
MIN_FREE_BYTES = 64 * 1024 * 1024
# The case archive being received, and the digest of the last one swapped in (in the step folder).
CASE_UPLOAD = "case-upload.tar"
CASE_RECEIVED = "case-received"
# Prefixes of the folders next to the case while one replaces it.
INCOMING_PREFIX = "case.incoming-"
REPLACED_PREFIX = "case.replaced-"
TAR_BLOCK = 512
READ_CHUNK = 1024 * 1024


class StepIODenied(exceptions.PermissionDenied):
    """The token is wrong, names another step, or the step does not run any more."""

    default_detail = "This token does not give access to this step's I/O."
    default_code = "step_io_denied"


class StepNotStarted(exceptions.APIException):
    """The step is being handed to its backend: its node asked a moment too early."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The step has not started yet; try again."
    default_code = "step_not_started"
    # Seconds to wait, sent as Retry-After by DRF's handler.
    wait = 1


class OffsetGap(exceptions.APIException):
    """A part was sent past the end of what the server holds: something before it is missing."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "offset_gap"

    def __init__(self, size: int):
        super().__init__(f"The server holds {size} bytes; send from that offset.")
        self.size = size


class UploadMismatch(exceptions.APIException):
    """The case archive received is not the one the node describes."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "upload_mismatch"


class ArchiveRefused(exceptions.ValidationError):
    """The case archive is not a tar, or holds members that would leave the case folder."""

    default_code = "archive_refused"


class InsufficientStorage(exceptions.APIException):
    """What the step sends would not fit on the server's disk."""

    status_code = status.HTTP_507_INSUFFICIENT_STORAGE
    default_detail = "The server has no room for this."
    default_code = "insufficient_storage"


class RecordConflict(exceptions.APIException):
    """A different scheduler job already reported for this step."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "scheduler_job_conflict"


@dataclass(frozen=True)
class StepFolders:
    """A step named by a valid token, its state and its folders on the server."""

    job_id: int
    step_id: int
    state: str
    job_dir: Path
    case_dir: Path
    step_dir: Path

    @property
    def running(self) -> bool:
        """Whether the step is in its backend's hands, the only time its token is valid."""
        return self.state in ACTIVE_STEP_STATES


# Access


def step_for_token(step_id: int, authorization: str) -> StepFolders:
    """The step whose token the Authorization header carries, in whatever state it is."""
    scheme, _, token = authorization.partition(" ")
    try:
        found = JobStep.objects.filter(pk=step_id).values_list("job_id", "state").first()
    except DatabaseError as error:
        logger.warning("Step %s: step I/O could not read the step: %s", step_id, error)
        raise StepNotStarted("The server is busy; try again.") from error

    # A missing step and a wrong token answer alike, so that ids cannot be probed.
    job_id, state = found if found is not None else (0, "")
    expected = step_token(job_id, step_id)
    if not (hmac.compare_digest(token.strip(), expected) and scheme.lower() == "bearer"):
        raise StepIODenied()
    if found is None:
        raise StepIODenied()
    folder = job_dir(job_id)
    return StepFolders(
        job_id, step_id, state, folder, case_dir(job_id), folder / "steps" / str(step_id)
    )


def running_step(step_id: int, authorization: str) -> StepFolders:
    """The step of a valid token, provided it runs; a step still being started waits."""
    step = step_for_token(step_id, authorization)
    if step.state == StepState.QUEUED:
        raise StepNotStarted()
    if not step.running:
        raise StepIODenied("The step does not run any more.")
    return step


# First contact and the end


def record_scheduler_job(step: StepFolders, scheduler_job_id: int) -> None:
    """Keep the scheduler job id the node runs under; another job for the same step is refused."""
    path = step.step_dir / SCHEDULER_JOB_FILE
    with _locked(step.step_dir):
        if path.exists() and path.read_text().strip() != str(scheduler_job_id):
            raise RecordConflict(
                f"Scheduler job {path.read_text().strip()} already runs this step."
            )
        _write_atomically(path, str(scheduler_job_id))
    logger.debug("Step %s runs as scheduler job %s", step.step_id, scheduler_job_id)


def write_exit_code(step: StepFolders, code: int) -> None:
    """Record the step's exit code, whole or not at all, as the step runner does."""
    _write_atomically(step.step_dir / EXIT_FILE, str(code))
    logger.debug("Step %s: exit code %s received", step.step_id, code)


def repeats_exit_code(step: StepFolders, code: int) -> bool:
    """Whether the step already ended with exactly this exit code (a retried last request)."""
    try:
        return (step.step_dir / EXIT_FILE).read_text().strip() == str(code)
    except OSError:
        return False


# Logs and the case archive, in parts


def append_log(step: StepFolders, stream: str, offset: int, data: bytes) -> int:
    """Append pushed bytes of a log stream at their offset; return the size the server holds."""
    return _append_at(step.step_dir / LOG_FILES[stream], offset, data)


def append_case_part(step: StepFolders, offset: int, data: bytes) -> int:
    """Append a part of the case archive at its offset; return the size received so far."""
    return _append_at(step.step_dir / CASE_UPLOAD, offset, data)


def _append_at(path: Path, offset: int, data: bytes) -> int:
    """Write what lies past the file's end; a repeated part changes nothing, a gap is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab", buffering=0) as target:
        fcntl.flock(target, fcntl.LOCK_EX)
        size = os.fstat(target.fileno()).st_size
        if offset > size:
            raise OffsetGap(size)

        fresh = data[size - offset :]
        if fresh:
            _require_room(path.parent, len(fresh))
            _write_or_refuse(target.fileno(), size, fresh)
        return max(size, offset + len(data))


def commit_case(step: StepFolders, size: int, sha256: str) -> None:
    """Swap the received archive in as the job's case folder, once it is whole and fits.

    Repeating the commit of the archive last swapped in changes nothing.
    """
    upload = step.step_dir / CASE_UPLOAD
    received = step.step_dir / CASE_RECEIVED
    with _locked(step.step_dir):
        if not upload.exists():
            if received.exists() and received.read_text() == sha256:
                return
            raise UploadMismatch("No case archive was received.")
        try:
            _check_upload(upload, size, sha256)
            _replace_case(step, upload)
        finally:
            upload.unlink(missing_ok=True)
        _write_atomically(received, sha256)
    logger.info("Job %s: step %s sent its case folder back", step.job_id, step.step_id)


def _check_upload(upload: Path, size: int, sha256: str) -> None:
    """Refuse an archive whose size or digest is not what the node sent."""
    if upload.stat().st_size != size:
        raise UploadMismatch(f"Received {upload.stat().st_size} bytes, not {size}.")
    digest = hashlib.sha256()
    with open(upload, "rb") as stream:
        while chunk := stream.read(READ_CHUNK):
            digest.update(chunk)
    if not hmac.compare_digest(digest.hexdigest(), sha256):
        raise UploadMismatch("The case archive received does not match its digest.")


def _replace_case(step: StepFolders, upload: Path) -> None:
    """Extract the archive next to the case folder, then rename it into the case's place.

    Limitation: between the two renames the case folder is missing for a moment; a server
    that dies right then leaves the new one as `case.incoming-*` beside the job's folder.
    """
    _remove_leftovers(step.job_dir)
    incoming = Path(tempfile.mkdtemp(prefix=INCOMING_PREFIX, dir=step.job_dir))
    try:
        _extract(upload, incoming)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise

    mode = stat.S_IMODE(step.case_dir.stat().st_mode) if step.case_dir.exists() else 0o755
    incoming.chmod(mode)
    replaced = step.job_dir / f"{REPLACED_PREFIX}{secrets.token_hex(4)}"
    if step.case_dir.exists():
        os.rename(step.case_dir, replaced)
    os.rename(incoming, step.case_dir)
    shutil.rmtree(replaced, ignore_errors=True)


def _extract(upload: Path, target: Path) -> None:
    """Extract with tarfile's "data" filter: no absolute paths, `..`, links out or devices."""
    try:
        with tarfile.open(upload, "r:") as archive:
            members = archive.getmembers()
            _refuse_strays(members)
            _require_room(target, sum(member.size for member in members if member.isreg()))
            archive.extractall(target, filter="data")
    except tarfile.TarError as error:
        raise ArchiveRefused({"case": [f"The case archive was refused: {error}"]}) from error
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage() from error
        raise ArchiveRefused({"case": [f"The case archive was refused: {error}"]}) from error


def _refuse_strays(members: list[tarfile.TarInfo]) -> None:
    """Refuse absolute names and `..`, which the filter would quietly strip or stop midway."""
    for member in members:
        if member.name.startswith("/") or ".." in member.name.split("/"):
            raise tarfile.OutsideDestinationError(member, member.name)


def _remove_leftovers(folder: Path) -> None:
    """Remove what an interrupted case replacement left next to the case folder."""
    for entry in folder.iterdir():
        if entry.name.startswith((INCOMING_PREFIX, REPLACED_PREFIX)):
            shutil.rmtree(entry, ignore_errors=True)


# Downloads


def bundle_archive(step: StepFolders) -> Iterator[bytes]:
    """The runner, its spec and the scripts the backend prepared, as a tar stream."""
    return tar_stream(step.step_dir / BUNDLE_FOLDER)


def case_archive(step: StepFolders) -> Iterator[bytes]:
    """The job's case folder as a tar stream (empty if there is none)."""
    return tar_stream(step.case_dir)


def tar_stream(root: Path) -> Iterator[bytes]:
    """A folder as an uncompressed tar, produced piece by piece (never a whole file in memory).

    Directories, regular files and symbolic links go in, named relative to `root`; anything
    else (sockets, devices) is left out.
    """
    for path in _entries(root):
        details = path.lstat()
        member = _member(path, path.relative_to(root).as_posix(), details)
        if member is None:
            continue
        yield member.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        if member.isreg():
            yield from _file_blocks(path, member.size)
    yield bytes(2 * TAR_BLOCK)


def _entries(root: Path) -> Iterator[Path]:
    """Everything under `root`, parents before children, in a stable order, links not followed."""
    if not root.is_dir():
        return
    for folder, folders, files in os.walk(root):
        folders.sort()
        for name in sorted(folders + files):
            yield Path(folder) / name


def _member(path: Path, name: str, details: os.stat_result) -> tarfile.TarInfo | None:
    """The tar header of one entry, or None for a kind of file a case never needs."""
    member = tarfile.TarInfo(name)
    member.mode = stat.S_IMODE(details.st_mode)
    member.mtime = details.st_mtime
    if stat.S_ISDIR(details.st_mode):
        member.type = tarfile.DIRTYPE
    elif stat.S_ISREG(details.st_mode):
        member.size = details.st_size
    elif stat.S_ISLNK(details.st_mode):
        member.type, member.linkname = tarfile.SYMTYPE, os.readlink(path)
    else:
        return None
    return member


def _file_blocks(path: Path, size: int) -> Iterator[bytes]:
    """Exactly `size` bytes of a file (zeros if it shrank meanwhile), padded to a tar block."""
    left = size
    with open(path, "rb") as stream:
        while left > 0:
            chunk = stream.read(min(READ_CHUNK, left)) or bytes(min(READ_CHUNK, left))
            left -= len(chunk)
            yield chunk
    if size % TAR_BLOCK:
        yield bytes(TAR_BLOCK - size % TAR_BLOCK)


# Helpers


def free_bytes(folder: Path) -> int:
    """Free bytes on the disk of a folder."""
    return shutil.disk_usage(folder).free


def _require_room(folder: Path, needed: int) -> None:
    """Refuse what would leave the disk with less than MIN_FREE_BYTES."""
    if free_bytes(folder) < needed + MIN_FREE_BYTES:
        raise InsufficientStorage(f"The server has no room for {needed} more bytes.")


def _write_or_refuse(descriptor: int, size: int, data: bytes) -> None:
    """Append all of `data`; on a full disk, cut off what was written and refuse."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
    except OSError as error:
        os.ftruncate(descriptor, size)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage() from error
        raise


def _write_atomically(path: Path, text: str) -> None:
    """Write a small file so that it appears whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@contextlib.contextmanager
def _locked(folder: Path):
    """Hold an exclusive lock on a step folder while the block runs."""
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
