"""The built-in object store: one bucket of S3-style objects kept as ordinary files on disk.

Layout under the store's root folder:

- `objects/<key>`: each object's bytes as a plain file, so a job can copy a folder at disk speed;
  a folder marker (a key ending in "/") is the folder itself.
- `meta/<hh>/<sha256 of key>.json`: a sidecar per object with its ETag, user metadata and the
  size and modification time it describes; a folder marker has a sidecar and no file.
- `uploads/<upload id>/`: the state of a multipart upload: `upload.json` (key and metadata);
  `data`, one sparse file into which parts of equal size are written in place, each at
  (part number - 1) x the declared size of the first part to arrive (recorded in `stride`),
  with a `<part number>.slot` record per part written there; and `<part number>.<ETag>`
  files for the parts that do not fit a slot, or whose slot the filesystem cannot hold
  (a file size or disk space limit). Only the last stored upload of a part number is kept:
  storing one forgets the record and files of earlier ones. When the
  completed parts fill `data` end to end, it becomes the object as it is, without a copy.
  Parts are not fsynced one by one: `data` is fsynced once at completion, after any slot
  recorded before the machine's last reboot has been read back and re-hashed, so a part lost
  in a crash fails the completion as InvalidPart and never makes a corrupt object.
- `.tmp/`: files being written; they are renamed into place only once complete.
- `.lock`: serialises commits (exclusive flock) against readers (shared flock), across threads
  and processes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
MAX_KEY_BYTES = 1024
# Longest file name most filesystems accept; a key segment becomes one file or folder name.
MAX_SEGMENT_BYTES = 255
MAX_PART_NUMBER = 10000
EMPTY_MD5 = hashlib.md5(b"", usedforsecurity=False).hexdigest()
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_PART_ETAG = re.compile(r"[0-9a-f]{32}")
_DATA_FILE = "data"
_STRIDE_FILE = "stride"
# S3's largest object; a part whose slot would end further out gets a file of its own.
MAX_SLOTTED_BYTES = 5 * 1024**4
_BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
# Errors that mean the data file cannot grow to hold a slot, though a file of its own may fit.
_NO_ROOM_ERRNOS = (errno.EFBIG, errno.ENOSPC, errno.EDQUOT)


# The exception names follow S3's error codes (InvalidKey, NoSuchUpload, ...) rather than
# ending in "Error", so the S3 layer and the job worker read the same words.
class InvalidKey(ValueError):  # noqa: N818
    """A key the store refuses: empty, too long, or not a clean relative path."""


class KeyConflict(ValueError):  # noqa: N818
    """A key that needs a path which is a file for one object and a folder for another."""


class DigestMismatch(ValueError):  # noqa: N818
    """The bytes received do not have the SHA-256 digest the client announced."""


class LengthMismatch(ValueError):  # noqa: N818
    """The stream ended before (or ran past) the length the client announced."""


class InvalidPart(ValueError):  # noqa: N818
    """A multipart completion names a part that was not uploaded or has another ETag."""


class InvalidPartOrder(InvalidPart):
    """A multipart completion lists its parts out of ascending order."""


class NoSuchUpload(KeyError):  # noqa: N818
    """The multipart upload id is unknown, completed or aborted."""


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object, without its bytes."""

    key: str
    size: int
    last_modified: datetime
    etag: str
    metadata: dict[str, str] = field(default_factory=dict)


def validate_key(key: str) -> str:
    """Return `key` if the store can hold it as a relative path, else raise InvalidKey."""
    if not key:
        raise InvalidKey("the key is empty")
    if len(key.encode("utf-8", errors="surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(f"the key is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/") or "\x00" in key or "\\" in key:
        raise InvalidKey("the key starts with '/' or contains a NUL or a backslash")

    segments = key.split("/")
    # A trailing "/" names a folder marker; every other segment must be a real file name.
    if key.endswith("/"):
        segments.pop()
    for segment in segments:
        _validate_segment(segment)
    return key


def _validate_segment(segment: str) -> None:
    """Refuse one path segment of a key that cannot be a file or folder name of its own."""
    if segment in ("", ".", ".."):
        raise InvalidKey("the key has an empty, '.' or '..' path segment")
    try:
        encoded = segment.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidKey("the key is not valid UTF-8") from error
    if len(encoded) > MAX_SEGMENT_BYTES:
        raise InvalidKey(f"a segment of the key is longer than {MAX_SEGMENT_BYTES} bytes")


def _is_valid_folder(prefix: str) -> bool:
    """Tell whether a folder prefix ("" or ending in "/") could hold any valid key."""
    if not prefix:
        return True
    try:
        validate_key(prefix)
    except InvalidKey:
        return False
    return True


@dataclass
class _Received:
    """A complete temporary file in the staging folder and the MD5 digest of its bytes."""

    path: Path
    md5: bytes


@dataclass(frozen=True)
class _PartSource:
    """Where a completed part's bytes are: a range of the upload's data file, or a file."""

    path: Path | None
    offset: int
    length: int


class _SlotWriter:
    """A writable target that puts a part's bytes into its slot of the upload's data file."""

    def __init__(self, handle: int, offset: int) -> None:
        self.offset = offset
        self.handle = handle
        self._position = offset

    def write(self, data: bytes) -> None:
        """Write all of `data` at the slot's current position and move past it."""
        _pwrite_all(self.handle, data, self._position)
        self._position += len(data)


class LocalObjectStore:
    """A bucket-less object store on a local (or shared) filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._objects = self.root / "objects"
        self._meta = self.root / "meta"
        self._uploads = self.root / "uploads"
        self._staging = self.root / ".tmp"
        self._lock_path = self.root / ".lock"
        self._boot_id = _read_boot_id()
        for folder in (self._objects, self._meta, self._uploads, self._staging):
            folder.mkdir(parents=True, exist_ok=True)

    # Reading

    def head(self, key: str) -> ObjectInfo | None:
        """Return the object's information, or None if there is no such object."""
        validate_key(key)
        with self._locked(exclusive=False):
            return self._read_info(key)

    def get(self, key: str) -> tuple[ObjectInfo, BinaryIO]:
        """Return the object's information and an open binary file of exactly those bytes."""
        validate_key(key)
        with self._locked(exclusive=False):
            info = self._read_info(key)
            if info is None:
                raise KeyError(key)
            if key.endswith("/"):
                return info, io.BytesIO(b"")
            return info, self._object_path(key).open("rb")

    def open(self, key: str) -> BinaryIO:
        """Open the object's bytes for reading; raise KeyError if it does not exist."""
        return self.get(key)[1]

    def path(self, key: str) -> Path:
        """Return where the object's bytes are on disk (a folder for a folder marker)."""
        if self.head(key) is None:
            raise KeyError(key)
        return self._object_path(key)

    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        """Yield the objects whose keys start with `prefix` and sort after `start_after`.

        Keys come in ascending UTF-8 byte order, as S3 lists them, and only the folder that
        holds the prefix is walked.
        """
        folder, name_prefix = _split_prefix(prefix)
        if not _is_valid_folder(folder):
            return
        marker = self._prefix_marker(folder, name_prefix, start_after)
        if marker is not None:
            yield marker
        for key in self._walk(folder, name_prefix, start_after):
            info = self._head_listed(key)
            if info is not None:
                yield info

    def list_folder(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo | str]:
        """Yield what a listing with delimiter "/" shows, in key order.

        Objects directly under the prefix come as ObjectInfo, and each sub-folder holding at
        least one key after `start_after` comes once as its prefix string ending in "/".
        """
        folder, name_prefix = _split_prefix(prefix)
        if not _is_valid_folder(folder):
            return
        marker = self._prefix_marker(folder, name_prefix, start_after)
        if marker is not None:
            yield marker
        for name, is_folder in self._entries(folder, name_prefix):
            if not is_folder:
                info = self._head_listed(folder + name) if folder + name > start_after else None
                if info is not None:
                    yield info
            elif self._has_key_after(folder + name + "/", start_after):
                yield folder + name + "/"

    # Writing

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        metadata: dict[str, str] | None = None,
        expected_sha256: str | None = None,
        length: int | None = None,
    ) -> ObjectInfo:
        """Store the bytes read from `stream` under `key`, visible only once completely written.

        With `expected_sha256` (hex) the bytes must have that digest, and with `length` the stream
        must hold exactly that many bytes; otherwise nothing is stored.
        """
        return self._put(key, stream, metadata, expected_sha256, length, overwrite=True)

    def put_file(
        self,
        key: str,
        source: Path,
        metadata: dict[str, str] | None = None,
        overwrite: bool = True,
    ) -> ObjectInfo:
        """Copy a local file into the store; with overwrite=False an existing key raises."""
        with Path(source).open("rb") as stream:
            return self._put(key, stream, metadata, None, None, overwrite=overwrite)

    def delete(self, key: str) -> bool:
        """Remove the object and any parent folders left empty; return False if it was absent."""
        validate_key(key)
        with self._locked(exclusive=True):
            if self._read_info(key) is None:
                return False

            target = self._object_path(key)
            if key.endswith("/"):
                with contextlib.suppress(OSError):
                    target.rmdir()
            else:
                target.unlink()
            self._sidecar_path(key).unlink(missing_ok=True)

            self._remove_empty_parents(key)
        logger.debug("deleted object %s", key)
        return True

    # Multipart uploads

    def create_multipart(self, key: str, metadata: dict[str, str] | None = None) -> str:
        """Start a multipart upload to `key` and return its random upload id."""
        validate_key(key)
        if key.endswith("/"):
            raise InvalidKey("a folder marker cannot be uploaded in parts")
        self._check_room(key)

        upload_id = secrets.token_hex(16)
        folder = self._uploads / upload_id
        folder.mkdir()
        os.close(os.open(folder / _DATA_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        record = {"key": key, "metadata": metadata or {}}
        self._write_json(folder / "upload.json", record)
        logger.debug("created multipart upload %s for %s", upload_id, key)
        return upload_id

    def upload_key(self, upload_id: str) -> str:
        """Return the key a multipart upload will write; raise NoSuchUpload if unknown."""
        return self._read_upload(upload_id)["key"]

    def put_part(
        self,
        upload_id: str,
        part_number: int,
        stream: BinaryIO,
        expected_sha256: str | None = None,
        length: int | None = None,
    ) -> str:
        """Store one part of a multipart upload and return its ETag (32 hex digits, no quotes).

        A part whose SHA-256 was announced (and is verified) takes the first half of that
        digest as its ETag instead of an MD5, sparing a third pass over every byte. A part of
        known length that fits its slot is written in place into the upload's data file. Once
        stored, the part replaces every earlier upload of its number.
        """
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise InvalidPart(f"part numbers run from 1 to {MAX_PART_NUMBER}")
        folder = self._upload_folder(upload_id)
        self._read_upload(upload_id)

        # Held shared until the part is stored, so no completion or abort runs meanwhile; the
        # record's lock makes uploads of one part number take turns, the last stored winning.
        with (
            self._upload_data(folder, exclusive=False) as data,
            _locked_record(folder / f"{part_number:05d}.slot") as record,
        ):
            offset = self._slot_offset(folder, part_number, length)
            if offset is None or not _claim_slot(data, record, offset, length):
                return self._put_part_file(
                    folder, part_number, record, stream, expected_sha256, length
                )
            slot = _SlotWriter(data, offset)
            return self._write_slot(
                folder, part_number, record, slot, stream, expected_sha256, length
            )

    def complete_multipart(self, upload_id: str, parts: list[tuple[int, str]]) -> ObjectInfo:
        """Join the listed parts, in order, into the upload's object and forget the upload."""
        upload = self._read_upload(upload_id)
        parts = _clean_parts(parts)
        _check_part_list(parts)
        folder = self._upload_folder(upload_id)

        # S3's multipart ETag: the MD5 of the parts' binary MD5s, then the number of parts.
        digests = b"".join(bytes.fromhex(etag) for _, etag in parts)
        etag = hashlib.md5(digests, usedforsecurity=False).hexdigest() + f"-{len(parts)}"

        # Part writers hold the data file shared, so none is midway while the parts are read.
        with self._upload_data(folder, exclusive=True) as data:
            sources = self._part_sources(folder, data, parts)
            if _fills_data_file(data, sources):
                info = self._commit_data_file(folder, data, upload, etag)
            else:
                info = self._commit_joined(data, sources, upload, etag)
            shutil.rmtree(folder, ignore_errors=True)
        logger.debug("completed multipart upload %s with %d parts", upload_id, len(parts))
        return info

    def abort_multipart(self, upload_id: str) -> None:
        """Discard a multipart upload and its parts."""
        folder = self._upload_folder(upload_id)
        # Waiting for part writers to finish keeps them from leaving files in a removed folder.
        with self._upload_data(folder, exclusive=True):
            shutil.rmtree(folder, ignore_errors=True)
        logger.debug("aborted multipart upload %s", upload_id)

    # Housekeeping

    def remove_stale(self, older_than: timedelta = timedelta(days=7)) -> int:
        """Delete staging files and multipart uploads untouched for `older_than`; return a count.

        Staging files are only left behind when a process dies mid-write, so call this at start-up.
        """
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for entry in [*self._staging.iterdir(), *self._uploads.iterdir()]:
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    _remove_path(entry)
                    removed += 1
        if removed:
            logger.warning("removed %d stale staging files or uploads", removed)
        return removed

    # Storing

    def _put(
        self,
        key: str,
        stream: BinaryIO,
        metadata: dict[str, str] | None,
        expected_sha256: str | None,
        length: int | None,
        overwrite: bool,
    ) -> ObjectInfo:
        """Receive a stream into the staging folder and commit it under `key`."""
        validate_key(key)
        self._check_room(key)
        if not overwrite and self.head(key) is not None:
            raise FileExistsError(key)

        received = self._receive(stream, expected_sha256, length)
        if key.endswith("/") and received.path.stat().st_size:
            received.path.unlink()
            raise InvalidKey("a key ending in '/' names a folder and must have no content")
        try:
            return self._commit(key, received.path, received.md5.hex(), metadata, overwrite)
        finally:
            received.path.unlink(missing_ok=True)

    def _receive(
        self,
        stream: BinaryIO,
        expected_sha256: str | None,
        length: int | None,
        etag_from_sha256: bool = False,
    ) -> _Received:
        """Copy a stream into a new staging file, checking its length and digest."""
        handle, name = tempfile.mkstemp(dir=self._staging, prefix="incoming-")
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as temporary:
                md5 = _copy_checked(stream, temporary, expected_sha256, length, etag_from_sha256)
                temporary.flush()
                os.fsync(temporary.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return _Received(path, md5)

    def _commit(
        self,
        key: str,
        source: Path | None,
        etag: str,
        metadata: dict[str, str] | None,
        overwrite: bool = True,
    ) -> ObjectInfo:
        """Move a complete staging file into place under `key` with its sidecar, atomically."""
        with self._locked(exclusive=True):
            if not overwrite and self._read_info(key) is not None:
                raise FileExistsError(key)
            target = self._make_room(key)

            status = None if key.endswith("/") else source.stat()
            record = _sidecar_record(key, etag, metadata, status)
            self._write_json(self._sidecar_path(key), record)
            if status is not None:
                os.replace(source, target)

            info = self._read_info(key)
        logger.debug("stored object %s (%d bytes)", key, info.size)
        return info

    def _make_room(self, key: str) -> Path:
        """Create the folders `key` needs and return its path; raise KeyConflict on a clash."""
        self._check_room(key)
        target = self._object_path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if key.endswith("/"):
                target.mkdir(exist_ok=True)
        except (FileExistsError, NotADirectoryError) as error:
            raise KeyConflict(f"{key!r} clashes with an existing object") from error
        return target

    def _check_room(self, key: str) -> None:
        """Raise KeyConflict if a file sits where `key` needs a folder, or the other way round."""
        path = self._objects
        segments = key.rstrip("/").split("/")
        for segment in segments[:-1]:
            path = path / segment
            if path.exists() and not path.is_dir():
                raise KeyConflict(f"{key!r} lies under the object {str(path.name)!r}")

        target = path / segments[-1]
        if not target.exists():
            return
        if key.endswith("/") and not target.is_dir():
            raise KeyConflict(f"the folder {key!r} is already an object")
        if not key.endswith("/") and target.is_dir():
            raise KeyConflict(f"the object {key!r} is already a folder")

    def _remove_empty_parents(self, key: str) -> None:
        """Remove the folders above `key` that are now empty and are not folder markers."""
        segments = key.rstrip("/").split("/")[:-1]
        while segments:
            folder = "/".join(segments) + "/"
            if self._sidecar_path(folder).exists():
                return
            try:
                self._object_path(folder).rmdir()
            except OSError:
                return
            segments.pop()

    # Multipart helpers

    def _upload_folder(self, upload_id: str) -> Path:
        """Return the folder of a well-formed upload id, without checking that it exists."""
        if not _UPLOAD_ID.fullmatch(upload_id or ""):
            raise NoSuchUpload(upload_id)
        return self._uploads / upload_id

    def _read_upload(self, upload_id: str) -> dict:
        """Return the upload's recorded key and metadata; raise NoSuchUpload if unknown."""
        try:
            return json.loads((self._upload_folder(upload_id) / "upload.json").read_text())
        except FileNotFoundError as error:
            raise NoSuchUpload(upload_id) from error

    @contextlib.contextmanager
    def _upload_data(self, folder: Path, exclusive: bool) -> Iterator[int]:
        """Open the upload's data file locked: shared by part writers, exclusive to end it."""
        path = folder / _DATA_FILE
        try:
            handle = os.open(path, os.O_RDWR)
        except FileNotFoundError as error:
            # Limitation: uploads begun before data files existed are refused as unknown too.
            raise NoSuchUpload(folder.name) from error
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            # A completion may have made the file an object while this call waited for the lock.
            if not _is_same_file(handle, path):
                raise NoSuchUpload(folder.name)
            yield handle
        finally:
            os.close(handle)

    def _slot_offset(self, folder: Path, part_number: int, length: int | None) -> int | None:
        """Return where a part goes in the data file, or None if it needs a file of its own.

        Call with the part's record locked: part 1 may change the stride when it is stored.
        """
        if not length or self._boot_id is None:
            return None
        stride = _read_stride(folder)
        if stride is None:
            # The first part to arrive sets the slot size from its declared length, before its
            # body is read, so that the parts boto3 sends together all land in place. One that
            # then breaks off or lies only makes this upload's data file larger and sparser.
            self._fix_stride(folder, length)
            stride = _read_stride(folder)
        offset = (part_number - 1) * stride
        if length > stride or offset + length > MAX_SLOTTED_BYTES:
            return None
        return offset

    def _fix_stride(self, folder: Path, length: int) -> None:
        """Record the slot size, unless one is recorded already: the first to record wins."""
        path = folder / _STRIDE_FILE
        if path.exists():
            return
        handle, name = tempfile.mkstemp(dir=self._staging, prefix="stride-")
        try:
            with os.fdopen(handle, "w") as temporary:
                temporary.write(str(length))
                temporary.flush()
                os.fsync(temporary.fileno())
            # A link never replaces, so a stride once recorded never changes.
            with contextlib.suppress(FileExistsError):
                os.link(name, path)
        finally:
            os.unlink(name)

    def _write_slot(
        self,
        folder: Path,
        part_number: int,
        record: int,
        slot: _SlotWriter,
        stream: BinaryIO,
        expected_sha256: str | None,
        length: int,
    ) -> str:
        """Write a part straight into its claimed slot and record it; return its ETag."""
        digest = _copy_checked(stream, slot, expected_sha256, length, etag_from_sha256=True)
        entry = {
            "etag": digest.hex(),
            "offset": slot.offset,
            "length": length,
            "digest": "md5" if expected_sha256 is None else "sha256",
            # No fsync: slots from before a reboot are re-hashed at completion (InvalidPart).
            "boot": self._boot_id,
        }

        _remove_part_files(folder, part_number)
        _pwrite_all(record, json.dumps(entry).encode(), 0)
        return entry["etag"]

    def _put_part_file(
        self,
        folder: Path,
        part_number: int,
        record: int,
        stream: BinaryIO,
        expected_sha256: str | None,
        length: int | None,
    ) -> str:
        """Store a part that fits no slot as a file of its own and return its ETag."""
        received = self._receive(stream, expected_sha256, length, etag_from_sha256=True)
        etag = received.md5.hex()
        try:
            # Forget the earlier versions first: a crash in between loses the part, never
            # leaves an older version that completion would accept.
            os.ftruncate(record, 0)
            _remove_part_files(folder, part_number)
            os.replace(received.path, folder / f"{part_number:05d}.{etag}")
        except FileNotFoundError as error:
            raise NoSuchUpload(folder.name) from error
        finally:
            received.path.unlink(missing_ok=True)
        return etag

    def _part_sources(
        self, folder: Path, data: int, parts: list[tuple[int, str]]
    ) -> list[_PartSource]:
        """Find each listed (number, bare ETag) part's bytes: in its slot or in its own file."""
        sources = []
        for number, etag in parts:
            source = self._slot_source(folder, data, number, etag)
            if source is None:
                source = _file_source(folder, number, etag)
            if source is None:
                raise InvalidPart(f"part {number} with ETag {etag!r} was not uploaded")
            sources.append(source)
        return sources

    def _slot_source(self, folder: Path, data: int, number: int, etag: str) -> _PartSource | None:
        """Return the part's slot if it holds the bytes of that ETag."""
        record = _read_record(folder / f"{number:05d}.slot")
        if record is None or record["etag"] != etag:
            return None
        # Unsynced writes are lost in a crash, so a slot written before this boot is read back.
        if record["boot"] != self._boot_id and not _slot_holds(data, record):
            return None
        return _PartSource(None, record["offset"], record["length"])

    def _commit_data_file(self, folder: Path, data: int, upload: dict, etag: str) -> ObjectInfo:
        """Make the data file, which the parts fill exactly, the object itself."""
        os.fsync(data)
        return self._commit(upload["key"], folder / _DATA_FILE, etag, upload["metadata"])

    def _commit_joined(
        self, data: int, sources: list[_PartSource], upload: dict, etag: str
    ) -> ObjectInfo:
        """Copy the parts end to end into a new file and make that the object."""
        joined = self._join_parts(data, sources)
        try:
            return self._commit(upload["key"], joined, etag, upload["metadata"])
        finally:
            joined.unlink(missing_ok=True)

    def _join_parts(self, data: int, sources: list[_PartSource]) -> Path:
        """Concatenate the parts' bytes into one new staging file."""
        handle, name = tempfile.mkstemp(dir=self._staging, prefix="joined-")
        path = Path(name)
        try:
            position = 0
            for source in sources:
                _copy_part(data, source, handle, position)
                position += source.length
            os.fsync(handle)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(handle)
        return path

    # Paths, sidecars and the lock

    def _object_path(self, key: str) -> Path:
        """Return where `key` lives under objects/ (a folder marker without its trailing "/")."""
        return self._objects / key.rstrip("/")

    def _sidecar_path(self, key: str) -> Path:
        """Return the sidecar file of `key`, named by its hash so keys never clash."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self._meta / digest[:2] / f"{digest}.json"

    def _read_info(self, key: str) -> ObjectInfo | None:
        """Build an ObjectInfo from the object's file and sidecar; call with the lock held."""
        try:
            status = self._object_path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        is_folder = stat.S_ISDIR(status.st_mode)
        if is_folder != key.endswith("/"):
            return None
        if not is_folder and not stat.S_ISREG(status.st_mode):
            return None

        record = self._read_sidecar(key)
        if is_folder:
            return None if record is None else _marker_info(key, record)
        return _file_info(key, status, record)

    def _read_sidecar(self, key: str) -> dict | None:
        """Return the sidecar's record, or None if there is none or it cannot be read."""
        try:
            return json.loads(self._sidecar_path(key).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            logger.warning("unreadable sidecar for %s; serving the object without it", key)
            return None

    def _write_json(self, path: Path, record: dict) -> None:
        """Write a small JSON file atomically through the staging folder."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self._staging, prefix="record-")
        try:
            with os.fdopen(handle, "w") as temporary:
                json.dump(record, temporary)
                temporary.flush()
                os.fsync(temporary.fileno())
            os.replace(name, path)
        finally:
            Path(name).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        """Hold the store's lock, shared for readers and exclusive for commits and deletes."""
        handle = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(handle)

    # Walking the tree

    def _head_listed(self, key: str) -> ObjectInfo | None:
        """Read one listed key's information under the shared lock."""
        with self._locked(exclusive=False):
            return self._read_info(key)

    def _prefix_marker(self, folder: str, name_prefix: str, start_after: str) -> ObjectInfo | None:
        """Return the folder marker named by a prefix ending in "/"; it precedes its contents."""
        if name_prefix or not folder or folder <= start_after:
            return None
        return self._head_listed(folder)

    def _walk(self, folder: str, name_prefix: str, start_after: str) -> Iterator[str]:
        """Yield every key under `folder` whose name starts with `name_prefix`, in key order."""
        for name, is_folder in self._entries(folder, name_prefix):
            key = folder + name
            if not is_folder:
                if key > start_after:
                    yield key
                continue

            key += "/"
            # Every key in a sub-folder starts with its name and "/", so a whole sub-folder
            # sorts before start_after unless start_after itself lies inside it.
            if key <= start_after and not start_after.startswith(key):
                continue
            if key > start_after and self._sidecar_path(key).exists():
                yield key
            yield from self._walk(key, "", start_after)

    def _entries(self, folder: str, name_prefix: str) -> list[tuple[str, bool]]:
        """Return (name, is_folder) for the folder's entries, sorted as their keys sort."""
        entries = []
        try:
            with os.scandir(self._objects / folder) as scan:
                for entry in scan:
                    if entry.name.startswith(name_prefix) and _is_key_name(entry.name):
                        _append_entry(entries, entry)
        except (FileNotFoundError, NotADirectoryError):
            return []
        # A sub-folder's keys all continue its name with "/", so it sorts as name + "/".
        entries.sort(key=lambda item: item[0] + "/" if item[1] else item[0])
        return entries

    def _has_key_after(self, folder: str, start_after: str) -> bool:
        """Tell whether any key in a sub-folder, its marker included, sorts after start_after."""
        if folder > start_after and self._sidecar_path(folder).exists():
            return True
        if folder <= start_after and not start_after.startswith(folder):
            return False
        return next(self._walk(folder, "", start_after), None) is not None


def _split_prefix(prefix: str) -> tuple[str, str]:
    """Split a listing prefix into its folder (up to the last "/") and a name prefix."""
    cut = prefix.rfind("/") + 1
    return prefix[:cut], prefix[cut:]


def _is_key_name(name: str) -> bool:
    """Tell whether a file name on disk could be a key segment (UTF-8, not a dot name)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return name not in (".", "..")


def _append_entry(entries: list[tuple[str, bool]], entry: os.DirEntry) -> None:
    """Add a scanned entry if it is a regular file or a real folder (never a symlink)."""
    if entry.is_dir(follow_symlinks=False):
        entries.append((entry.name, True))
    elif entry.is_file(follow_symlinks=False):
        entries.append((entry.name, False))


def _copy_checked(
    stream: BinaryIO,
    target: BinaryIO,
    expected_sha256: str | None,
    length: int | None,
    etag_from_sha256: bool = False,
) -> bytes:
    """Copy a stream in chunks, checking its length and SHA-256; return a 16-byte digest.

    The digest is the MD5, or with `etag_from_sha256` and a SHA-256 to check, the first half
    of that SHA-256 (no MD5 pass at all).
    """
    sha256 = hashlib.sha256() if expected_sha256 is not None else None
    md5 = None if etag_from_sha256 and sha256 is not None else hashlib.md5(usedforsecurity=False)
    received = 0
    while chunk := stream.read(CHUNK_SIZE):
        received += len(chunk)
        if length is not None and received > length:
            raise LengthMismatch(f"the stream holds more than the announced {length} bytes")
        if md5 is not None:
            md5.update(chunk)
        if sha256 is not None:
            sha256.update(chunk)
        target.write(chunk)

    if length is not None and received != length:
        raise LengthMismatch(f"the stream ended after {received} of {length} bytes")
    if sha256 is not None and sha256.hexdigest() != expected_sha256.lower():
        raise DigestMismatch("the SHA-256 of the bytes received differs from the one announced")
    return md5.digest() if md5 is not None else sha256.digest()[:16]


def _check_part_list(parts: list[tuple[int, str]]) -> None:
    """Refuse a completion listing no parts, numbers out of range, or numbers out of order."""
    if not parts:
        raise InvalidPart("a multipart upload needs at least one part")
    previous = 0
    for number, _ in parts:
        if not 1 <= number <= MAX_PART_NUMBER:
            raise InvalidPart(f"part numbers run from 1 to {MAX_PART_NUMBER}")
        if number <= previous:
            raise InvalidPartOrder("parts must be listed in ascending order")
        previous = number


def _read_boot_id() -> str | None:
    """Return the id Linux draws at each boot, or None where there is none (no slots then)."""
    try:
        return _BOOT_ID_PATH.read_text().strip()
    except OSError:
        return None


def _is_same_file(handle: int, path: Path) -> bool:
    """Tell whether an open file is still the one found at `path`."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(handle)
    return (opened.st_dev, opened.st_ino) == (status.st_dev, status.st_ino)


@contextlib.contextmanager
def _locked_record(path: Path) -> Iterator[int]:
    """Open a slot's record, holding its lock so that uploads of one part number take turns."""
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle
    finally:
        os.close(handle)


def _read_stride(folder: Path) -> int | None:
    """Return the upload's slot size, or None while part 1 has not been written in place."""
    try:
        return int((folder / _STRIDE_FILE).read_text())
    except FileNotFoundError:
        return None


def _claim_slot(data: int, record: int, offset: int, length: int) -> bool:
    """Forget the slot's recorded part and grow the data file over the slot, if it can.

    Return False, before any byte of the part is read, when the filesystem refuses a file that
    large or has no room for it; the part then gets a file of its own. A slot at offset 0 is
    not tried: a file of its own would be refused just the same.
    """
    # Limitation: a slot's previous version is lost even when the new part then fails.
    os.ftruncate(record, 0)
    if offset == 0:
        return True
    try:
        # Writing the slot's last byte, which the part overwrites, is the whole reservation.
        _pwrite_all(data, b"\0", offset + length - 1)
    except OSError as error:
        if error.errno not in _NO_ROOM_ERRNOS:
            raise
        logger.warning("no room for a slot at %d (%s); storing the part as a file", offset, error)
        return False
    return True


def _remove_part_files(folder: Path, number: int) -> None:
    """Remove the files of every earlier upload of part `number`, keeping its slot record."""
    # Limitation: removals are not synced, so a crash right after may bring a version back.
    for path in folder.glob(f"{number:05d}.*"):
        if path.suffix != ".slot":
            path.unlink(missing_ok=True)


def _read_record(path: Path) -> dict | None:
    """Return a slot's record, or None if the slot holds no completely written part."""
    try:
        return json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None


def _slot_holds(data: int, record: dict) -> bool:
    """Read a slot back and tell whether its bytes still have the recorded ETag."""
    if record["digest"] == "sha256":
        digest = hashlib.sha256()
    else:
        digest = hashlib.md5(usedforsecurity=False)
    position, end = record["offset"], record["offset"] + record["length"]
    while position < end:
        chunk = os.pread(data, min(CHUNK_SIZE, end - position), position)
        if not chunk:
            return False
        digest.update(chunk)
        position += len(chunk)
    return digest.digest()[:16].hex() == record["etag"]


def _file_source(folder: Path, number: int, etag: str) -> _PartSource | None:
    """Return the part's own file with that ETag, if it was stored as one."""
    path = folder / f"{number:05d}.{etag}"
    try:
        return _PartSource(path, 0, path.stat().st_size)
    except FileNotFoundError:
        return None


def _fills_data_file(data: int, sources: list[_PartSource]) -> bool:
    """Tell whether the parts lie end to end in their slots and fill the data file exactly."""
    position = 0
    for source in sources:
        if source.path is not None or source.offset != position:
            return False
        position += source.length
    return position == os.fstat(data).st_size


def _copy_part(data: int, source: _PartSource, target: int, position: int) -> None:
    """Copy one part's bytes, from its slot or from its own file, into `target` at `position`."""
    if source.path is None:
        _copy_range(data, source.offset, source.length, target, position)
        return
    with source.path.open("rb") as part:
        _copy_range(part.fileno(), source.offset, source.length, target, position)


def _copy_range(source: int, offset: int, length: int, target: int, position: int) -> None:
    """Copy `length` bytes from `offset` in one file to `position` in another, in the kernel."""
    done = 0
    with contextlib.suppress(OSError):
        while done < length:
            copied = os.copy_file_range(
                source, target, length - done, offset + done, position + done
            )
            if copied == 0:
                break
            done += copied

    # Where the kernel cannot copy (or stopped short), the rest goes through Python.
    while done < length:
        chunk = os.pread(source, min(CHUNK_SIZE, length - done), offset + done)
        if not chunk:
            raise InvalidPart("a part holds fewer bytes than were uploaded")
        _pwrite_all(target, chunk, position + done)
        done += len(chunk)


def _pwrite_all(handle: int, data: bytes, position: int) -> None:
    """Write all of `data` at `position`, however many calls the kernel needs."""
    view = memoryview(data)
    while view:
        written = os.pwrite(handle, view, position)
        view = view[written:]
        position += written


def _clean_parts(parts: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Strip quotes from part ETags and refuse any that is not a hex MD5."""
    cleaned = []
    for number, etag in parts:
        bare = etag.strip().strip('"').lower()
        if not _PART_ETAG.fullmatch(bare):
            raise InvalidPart(f"part {number} has the malformed ETag {etag!r}")
        cleaned.append((number, bare))
    return cleaned


def _sidecar_record(
    key: str, etag: str, metadata: dict[str, str] | None, status: os.stat_result | None
) -> dict:
    """Describe an object for its sidecar; a file's size and mtime let stale sidecars show."""
    record = {"key": key, "etag": etag, "metadata": dict(metadata or {})}
    if status is None:
        record.update(size=0, mtime_ns=time.time_ns())
    else:
        record.update(size=status.st_size, mtime_ns=status.st_mtime_ns)
    return record


def _marker_info(key: str, record: dict) -> ObjectInfo:
    """Describe a folder marker from its sidecar."""
    return ObjectInfo(
        key=key,
        size=0,
        last_modified=_utc(record.get("mtime_ns", 0)),
        etag=record.get("etag", EMPTY_MD5),
        metadata=record.get("metadata", {}),
    )


def _file_info(key: str, status: os.stat_result, record: dict | None) -> ObjectInfo:
    """Describe a file object, trusting the sidecar only if it matches the file on disk."""
    current = (
        record is not None
        and record.get("size") == status.st_size
        and record.get("mtime_ns") == status.st_mtime_ns
    )
    if not current:
        # Limitation: a file without a matching sidecar (left by a crash between the sidecar
        # write and the rename) gets an ETag derived from its size and mtime, not its MD5.
        fingerprint = f"{status.st_size}:{status.st_mtime_ns}".encode()
        etag = hashlib.md5(fingerprint, usedforsecurity=False).hexdigest()
        record = {"etag": etag, "metadata": {}}
    return ObjectInfo(
        key=key,
        size=status.st_size,
        last_modified=_utc(status.st_mtime_ns),
        etag=record["etag"],
        metadata=record["metadata"],
    )


def _utc(nanoseconds: int) -> datetime:
    """Turn a nanosecond Unix timestamp into an aware UTC datetime."""
    return datetime.fromtimestamp(nanoseconds / 1e9, tz=UTC)


def _remove_path(path: Path) -> None:
    """Remove a file or a whole folder."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
