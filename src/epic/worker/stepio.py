"""Step I/O: how a step on a compute node that shares no disk with the server reads and writes.

The node's wrapper first exchanges the step's one-time bootstrap token (from its batch script)
for a session secret, which only the step's own Slurm job may do, then calls the internal
endpoint (`epic.worker.stepio_views`) with that secret; this module does the work. It serves
the bundle a backend prepared and the job's case folder as tar streams, appends pushed log
bytes at their offsets to the server-side step folder's files, takes the case folder back as a
tar of plain files and folders uploaded in parts, and records the exit code last, exactly
where the step runner would have written it on a shared disk; after it, nothing changes. Every
file it writes lies in the folders of the job the credential names; their names come from the
ids, never from the request.

Limitation: a lost answer to the bootstrap exchange cannot be retried (the token is spent),
so the step's node then fails to report and Slurm's word ends the step.
Limitation: the token and the secret travel in clear unless EPIC_API_URL is an https address
(a proxy in front of the server); the endpoint itself speaks plain HTTP, like the rest of the
API. The wrapper does not check that it talks to this server: on a machine where jobs run, a
job that takes the server's port while it is stopped receives the tokens sent meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
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

from epic.compute.local import RUNNER_SOURCE
from epic.compute.remote import (
    BUNDLE_FILE,
    BUNDLE_FOLDER,
    EXIT_FILE,
    LOG_FILES,
    RUNNER_FILE,
    SCHEDULER_JOB_FILE,
    SESSION_FILE,
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
# What a case archive sent back may hold: how much, how many members, how long their names.
CASE_MAX_BYTES = 64 * 1024**3
CASE_MAX_MEMBERS = 100_000
MEMBER_NAME_MAX_BYTES = 1024
NAME_PART_MAX_BYTES = 255
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
    """The case archive is not a tar, or holds members other than plain files and folders."""

    default_code = "archive_refused"


class InsufficientStorage(exceptions.APIException):
    """What the step sends would not fit on the server's disk."""

    status_code = status.HTTP_507_INSUFFICIENT_STORAGE
    default_detail = "The server has no room for this."
    default_code = "insufficient_storage"


class StepEnded(exceptions.APIException):
    """The step's exit code is recorded: nothing of the step changes any more."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The step's exit code is recorded; nothing more is accepted."
    default_code = "step_ended"


@dataclass(frozen=True)
class StepFolders:
    """A step named by a valid token, its state and its folders on the server."""

    job_id: int
    step_id: int
    state: str
    local_job_id: int | None
    job_dir: Path
    case_dir: Path
    step_dir: Path

    @property
    def running(self) -> bool:
        """Whether the step is in its backend's hands, the only time its token is valid."""
        return self.state in ACTIVE_STEP_STATES


# Access


def step_for_bootstrap(step_id: int, authorization: str) -> StepFolders:
    """The step whose bootstrap token (the one in its batch script) the header carries."""
    token = _bearer(authorization)
    found = _find_step(step_id)

    # A missing step and a wrong token answer alike, so that ids cannot be probed.
    job_id = found[0] if found is not None else 0
    expected = step_token(job_id, step_id).encode()
    if found is None or not hmac.compare_digest(token.encode(), expected):
        raise StepIODenied()
    return _folders(step_id, *found)


def step_for_session(step_id: int, authorization: str) -> StepFolders:
    """The step whose session secret, handed out at the bootstrap exchange, the header carries."""
    token = _bearer(authorization)
    found = _find_step(step_id)
    if found is None:
        raise StepIODenied()
    step = _folders(step_id, *found)
    try:
        expected = (step.step_dir / SESSION_FILE).read_text().strip().encode()
    except OSError:
        raise StepIODenied() from None
    if not hmac.compare_digest(_digest(token).encode(), expected):
        raise StepIODenied()
    return step


def running_step(step_id: int, authorization: str) -> StepFolders:
    """The step of a valid session secret, provided it runs."""
    step = step_for_session(step_id, authorization)
    if not step.running:
        raise StepIODenied("The step does not run any more.")
    return step


def _bearer(authorization: str) -> str:
    """The token of a `Bearer` Authorization header; anything else is refused."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.isascii() or not token:
        raise StepIODenied()
    return token


def _find_step(step_id: int) -> tuple[int, str, int | None] | None:
    """The job id, state and Slurm job id of a step, or None if there is no such step."""
    try:
        return (
            JobStep.objects.filter(pk=step_id)
            .values_list("job_id", "state", "local_job_id")
            .first()
        )
    except DatabaseError as error:
        logger.warning("Step %s: step I/O could not read the step: %s", step_id, error)
        raise StepNotStarted("The server is busy; try again.") from error


def _folders(step_id: int, job_id: int, state: str, local_job_id: int | None) -> StepFolders:
    """The server-side folders of a step."""
    folder = job_dir(job_id)
    return StepFolders(
        job_id,
        step_id,
        state,
        local_job_id,
        folder,
        case_dir(job_id),
        folder / "steps" / str(step_id),
    )


def _digest(secret: str) -> str:
    """How a session secret is kept on the server: its SHA-256 digest, never itself."""
    return hashlib.sha256(secret.encode()).hexdigest()


# First contact and the end


def open_session(step: StepFolders, scheduler_job_id: int) -> str:
    """Exchange the step's one-time bootstrap token for a session secret, and return it.

    Only the step's own Slurm job may do so, once, while the step is in its backend's hands.
    """
    if step.state == StepState.QUEUED or (step.running and step.local_job_id is None):
        raise StepNotStarted()
    if not step.running:
        raise StepIODenied("The step does not run any more.")
    if scheduler_job_id != step.local_job_id:
        raise StepIODenied("This is not the step's scheduler job.")

    session = step.step_dir / SESSION_FILE
    secret = secrets.token_urlsafe(32)
    with _locked(step.step_dir):
        if session.exists():
            raise StepIODenied("This step's bootstrap token was already used.")
        _write_atomically(session, _digest(secret))
        _write_atomically(step.step_dir / SCHEDULER_JOB_FILE, str(scheduler_job_id))
    logger.debug("Step %s runs as scheduler job %s", step.step_id, scheduler_job_id)
    return secret


def refuse_after_exit(step: StepFolders) -> None:
    """Refuse any change once the step's exit code is recorded: it was the last word."""
    if (step.step_dir / EXIT_FILE).exists():
        raise StepEnded()


def write_exit_code(step: StepFolders, code: int) -> None:
    """Record the step's exit code once, whole; an identical repeat changes nothing.

    A different code once one is recorded is refused, and so is a first one from a step that
    no longer runs.
    """
    path = step.step_dir / EXIT_FILE
    with _locked(step.step_dir):
        if path.exists():
            if path.read_text().strip() == str(code):
                return
            raise StepEnded()
        if not step.running:
            raise StepIODenied("The step does not run any more.")
        _write_atomically(path, str(code))
    logger.debug("Step %s: exit code %s received", step.step_id, code)


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
    with _opened_for_append(path, offset) as target:
        fcntl.flock(target, fcntl.LOCK_EX)
        size = os.fstat(target.fileno()).st_size
        if offset > size:
            raise OffsetGap(size)

        fresh = data[size - offset :]
        if fresh:
            _require_room(path.parent, len(fresh))
            _write_or_refuse(target.fileno(), size, fresh)
        return max(size, offset + len(data))


def _opened_for_append(path: Path, offset: int):
    """The file to append to; a file not there yet is made only by a part at offset 0."""
    try:
        return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND), "ab", buffering=0)
    except FileNotFoundError:
        if offset > 0:
            raise OffsetGap(0) from None
        return open(path, "ab", buffering=0)


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
    """Extract an archive of plain files and folders only, checked whole before anything is made.

    tarfile's "data" filter alone is not enough: links and over-long names can defeat it.
    """
    try:
        with tarfile.open(upload, "r:") as archive:
            _require_room(target, _check_members(archive))
            archive.extractall(target, filter="data")
    except tarfile.TarError as error:
        raise ArchiveRefused({"case": [f"The case archive was refused: {error}"]}) from error
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage() from error
        raise ArchiveRefused({"case": [f"The case archive was refused: {error}"]}) from error


def _check_members(archive: tarfile.TarFile) -> int:
    """Read the members one by one, refusing the archive at the first bad one; return its size."""
    total = 0
    for count, member in enumerate(archive, 1):
        if count > CASE_MAX_MEMBERS:
            raise tarfile.TarError(f"more than {CASE_MAX_MEMBERS} members")
        _check_member(member)
        total += member.size if member.isreg() else 0
        if total > CASE_MAX_BYTES:
            raise tarfile.TarError(f"more than {CASE_MAX_BYTES} bytes")
    return total


def _check_member(member: tarfile.TarInfo) -> None:
    """Refuse anything but a plain file or folder, and names that are odd or over-long."""
    name = member.name.encode("utf-8", "surrogateescape")
    if member.issparse() or not (member.isreg() or member.isdir()):
        raise tarfile.TarError(f"{member.name!r} is not a plain file or folder")
    if member.name.startswith("/") or ".." in member.name.split("/"):
        raise tarfile.OutsideDestinationError(member, member.name)
    if len(name) > MEMBER_NAME_MAX_BYTES:
        raise tarfile.TarError(f"a member name is longer than {MEMBER_NAME_MAX_BYTES} bytes")
    if any(len(part) > NAME_PART_MAX_BYTES for part in name.split(b"/")):
        raise tarfile.TarError(f"a member name has a part over {NAME_PART_MAX_BYTES} bytes")


def _remove_leftovers(folder: Path) -> None:
    """Remove what an interrupted case replacement left next to the case folder."""
    for entry in folder.iterdir():
        if entry.name.startswith((INCOMING_PREFIX, REPLACED_PREFIX)):
            shutil.rmtree(entry, ignore_errors=True)


# Downloads


def bundle_archive(step: StepFolders) -> Iterator[bytes]:
    """The runner, its spec and the scripts the backend prepared, as a tar stream.

    Limitation: the runner is the serving server's own, so a step that waited in its
    scheduler across an upgrade runs the new runner with the spec the old version wrote.
    """
    prepared = step.step_dir / BUNDLE_FILE
    if not prepared.exists():
        # A step submitted by an earlier version: its bundle is a folder of these files.
        return tar_stream(step.step_dir / BUNDLE_FOLDER)
    files = {RUNNER_FILE: RUNNER_SOURCE, **json.loads(prepared.read_text())}
    return _tar_of_texts(files, prepared.stat().st_mtime)


def _tar_of_texts(files: dict[str, str], mtime: float) -> Iterator[bytes]:
    """Small files given by name and text, as an uncompressed tar stream."""
    for name in sorted(files):
        content = files[name].encode()
        member = tarfile.TarInfo(name)
        member.mode, member.mtime, member.size = 0o644, mtime, len(content)
        yield member.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        yield content + bytes(-len(content) % TAR_BLOCK)
    yield bytes(2 * TAR_BLOCK)


def case_archive(step: StepFolders) -> Iterator[bytes]:
    """The job's case folder as a tar stream (empty if there is none)."""
    return tar_stream(step.case_dir)


def tar_stream(root: Path) -> Iterator[bytes]:
    """A folder as an uncompressed tar, produced piece by piece (never a whole file in memory).

    Directories and regular files go in, named relative to `root`; anything else (links,
    sockets, devices) is left out, as the node refuses it.
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
