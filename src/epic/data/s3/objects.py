"""Object operations: HeadObject, GetObject, PutObject and DeleteObject."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import BinaryIO

from epic.data import store
from epic.data.s3 import bodies
from epic.data.s3.errors import S3Error
from epic.data.s3.request import Operation, Response

# S3's limits on one PUT and on the user metadata stored with an object.
MAX_OBJECT_BYTES = 5 * 1024**3
MAX_METADATA_BYTES = 2048
METADATA_PREFIX = "x-amz-meta-"
# Only ASCII digits: \d also matches other scripts' digits, such as "٣".
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# A byte position with more significant digits lies past the end of any object.
_POSITION_DIGITS = 18
_BEYOND_ANY_OBJECT = 10**_POSITION_DIGITS
# Longest HTTP date worth parsing; the longest valid form is under 40 characters.
_MAX_DATE_LENGTH = 64


def head_object(operation: Operation) -> Response:
    """Describe an object in headers, without its bytes."""
    info = _existing(operation)
    status = check_conditions(operation.request.headers, info)
    if status is not None:
        return Response(status, validators(info))
    return Response(200, [*object_headers(info), ("Content-Length", str(info.size))])


def get_object(operation: Operation) -> Response:
    """Stream an object, or the one byte range asked for."""
    key = operation.object_key()
    try:
        info, file = operation.store.get(key)
    except KeyError as error:
        raise _no_such_key() from error

    try:
        status = check_conditions(operation.request.headers, info)
        byte_range = None if status else parse_range(operation.request.headers, info.size)
    except S3Error:
        file.close()
        raise
    if status is not None:
        file.close()
        return Response(status, validators(info))
    return _content_response(info, file, byte_range)


def put_object(operation: Operation) -> Response:
    """Store the request body as an object, with the user metadata from x-amz-meta-* headers."""
    key = operation.object_key()
    headers = operation.request.headers
    if "x-amz-copy-source" in headers:
        raise S3Error("NotImplemented", "CopyObject is not supported.")

    metadata = user_metadata(headers)
    body = bodies.object_body(
        operation.request.body, headers, MAX_OBJECT_BYTES, operation.request.content_sha256
    )
    info = operation.store.put_stream(key, body.stream, metadata, body.sha256, body.length)
    return Response(200, [("ETag", quote_etag(info.etag)), ("Content-Length", "0")])


def delete_object(operation: Operation) -> Response:
    """Delete an object; S3 answers 204 whether or not it existed."""
    operation.store.delete(operation.object_key())
    return Response(204)


def user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """Collect x-amz-meta-* headers under their lower-case names, within S3's size limit."""
    metadata = {
        name.removeprefix(METADATA_PREFIX): value
        for name, value in headers.items()
        if name.startswith(METADATA_PREFIX)
    }
    if sum(len(name) + len(value) for name, value in metadata.items()) > MAX_METADATA_BYTES:
        raise S3Error(
            "MetadataTooLarge",
            f"Your metadata headers exceed the maximum allowed size of {MAX_METADATA_BYTES}.",
        )
    return metadata


def object_headers(info: store.ObjectInfo) -> list[tuple[str, str]]:
    """Return the headers that describe an object in HEAD and GET answers."""
    # Limitation: Content-Type, Content-Encoding and other system metadata sent with a PUT are
    # not stored, so every object is served as binary/octet-stream.
    headers = [
        *validators(info),
        ("Accept-Ranges", "bytes"),
        ("Content-Type", "binary/octet-stream"),
    ]
    for name, value in sorted(info.metadata.items()):
        headers.append((METADATA_PREFIX + name, _header_safe(value)))
    return headers


def validators(info: store.ObjectInfo) -> list[tuple[str, str]]:
    """Return the ETag and Last-Modified headers, which conditional requests compare."""
    return [
        ("ETag", quote_etag(info.etag)),
        ("Last-Modified", format_datetime(info.last_modified, usegmt=True)),
    ]


def quote_etag(etag: str) -> str:
    """Wrap an ETag in the double quotes S3 sends."""
    return f'"{etag}"'


def check_conditions(headers: Mapping[str, str], info: store.ObjectInfo) -> int | None:
    """Apply If-Match and friends as S3 does: raise 412, return 304, or None to go on."""
    modified = info.last_modified.replace(microsecond=0)
    if "if-match" in headers:
        if not _etag_matches(headers["if-match"], info.etag):
            raise S3Error("PreconditionFailed", "At least one of the preconditions failed.")
    elif _after(modified, headers.get("if-unmodified-since")):
        raise S3Error("PreconditionFailed", "At least one of the preconditions failed.")

    if "if-none-match" in headers:
        if _etag_matches(headers["if-none-match"], info.etag):
            return 304
    elif _not_after(modified, headers.get("if-modified-since")):
        return 304
    return None


def parse_range(headers: Mapping[str, str], size: int) -> tuple[int, int] | None:
    """Return the (first, last) byte positions of a single Range, None to send everything.

    An unparsable or multi-part Range is ignored, as S3 does; one that starts past the end is
    refused with InvalidRange.
    """
    match = _RANGE.fullmatch(headers.get("range", "").strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None

    first, last = match.group(1), match.group(2)
    if first == "":
        length = _position(last)
        if length == 0 or size == 0:
            raise _invalid_range()
        return max(0, size - length), size - 1
    start = _position(first)
    if last != "" and _position(last) < start:
        return None
    if start >= size:
        raise _invalid_range()
    return start, min(_position(last), size - 1) if last else size - 1


class FileChunks:
    """A WSGI body that streams a span of an open file and closes it when the server is done."""

    def __init__(self, file: BinaryIO, start: int, length: int) -> None:
        self._file = file
        self._start = start
        self._length = length

    def __iter__(self) -> Iterator[bytes]:
        self._file.seek(self._start)
        remaining = self._length
        while remaining > 0:
            chunk = self._file.read(min(store.CHUNK_SIZE, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk

    def close(self) -> None:
        """Close the file; WSGI servers call this after the last chunk or on disconnect."""
        self._file.close()


def _existing(operation: Operation) -> store.ObjectInfo:
    """Return the requested object's information, or raise NoSuchKey."""
    info = operation.store.head(operation.object_key())
    if info is None:
        raise _no_such_key()
    return info


def _content_response(
    info: store.ObjectInfo, file: BinaryIO, byte_range: tuple[int, int] | None
) -> Response:
    """Answer a GetObject with the whole object (200) or one byte range (206)."""
    if byte_range is None:
        headers = [*object_headers(info), ("Content-Length", str(info.size))]
        return Response(200, headers, FileChunks(file, 0, info.size))

    first, last = byte_range
    headers = [
        *object_headers(info),
        ("Content-Length", str(last - first + 1)),
        ("Content-Range", f"bytes {first}-{last}/{info.size}"),
    ]
    return Response(206, headers, FileChunks(file, first, last - first + 1))


def _position(digits: str) -> int:
    """Read a Range position of any length; one past the end of any object reads as such."""
    significant = digits.lstrip("0")
    if len(significant) > _POSITION_DIGITS:
        return _BEYOND_ANY_OBJECT
    return int(significant or "0")


def _etag_matches(header: str, etag: str) -> bool:
    """Tell whether an If-Match/If-None-Match list names this ETag (or is "*")."""
    candidates = [item.strip().removeprefix("W/").strip('"') for item in header.split(",")]
    return "*" in candidates or etag in candidates


def _after(modified: datetime, header: str | None) -> bool:
    """Tell whether the object changed after an HTTP date (False if the date is unusable)."""
    since = _http_date(header)
    return since is not None and modified > since


def _not_after(modified: datetime, header: str | None) -> bool:
    """Tell whether the object is unchanged since an HTTP date (False if the date is unusable)."""
    since = _http_date(header)
    return since is not None and modified <= since


def _http_date(header: str | None) -> datetime | None:
    """Parse an HTTP date header, or return None if absent or malformed."""
    if not header or len(header) > _MAX_DATE_LENGTH or not header.isascii():
        return None
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError, OverflowError):
        return None
    return moment if moment.tzinfo else None


def _header_safe(value: str) -> str:
    """Return a metadata value a header can carry, RFC 2047-encoded if it is beyond latin-1."""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return "=?UTF-8?B?" + base64.b64encode(value.encode("utf-8")).decode() + "?="
    return value


def _no_such_key() -> S3Error:
    """Build S3's error for a missing object."""
    return S3Error("NoSuchKey", "The specified key does not exist.")


def _invalid_range() -> S3Error:
    """Build S3's error for a range that starts past the end of the object."""
    return S3Error("InvalidRange", "The requested range is not satisfiable")
