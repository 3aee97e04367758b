"""Request bodies: streaming readers that check length, aws-chunked framing and checksums.

botocore 1.44 against an http:// endpoint sends PutObject and UploadPart with a plain body, the
hex SHA-256 of the body in x-amz-content-sha256 and a CRC32 in x-amz-checksum-crc32. Over https
(for example behind a TLS-terminating proxy) it sends STREAMING-UNSIGNED-PAYLOAD-TRAILER instead:
the body is aws-chunked and the CRC32 comes as a trailer after the last chunk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from epic.data.s3.auth import STREAMING_UNSIGNED_PAYLOAD_TRAILER, UNSIGNED_PAYLOAD
from epic.data.s3.errors import S3Error
from epic.data.s3.request import parse_decimal

logger = logging.getLogger(__name__)

_LINE_LIMIT = 8192
_TRAILER_LIMIT = 16
_BUFFER_SIZE = 64 * 1024
# A chunk size is bare hex, at most 16 digits: int(..., 16) alone also takes "0x", "+" and "_".
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_CHECKSUM_PREFIX = "x-amz-checksum-"
# Headers under x-amz-checksum- that describe checksums rather than carry one.
_CHECKSUM_SETTINGS = ("x-amz-checksum-algorithm", "x-amz-checksum-mode", "x-amz-checksum-type")


class _Crc32:
    """A CRC32 accumulator with hashlib's update/digest shape."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


# The algorithms this endpoint can verify, by the name used in x-amz-checksum-<name>.
_ALGORITHMS: dict[str, Callable[[], object]] = {
    "crc32": _Crc32,
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "md5": lambda: hashlib.md5(usedforsecurity=False),
}


class ChecksumCheck:
    """Computes the checksums a client announced and compares them once the body has ended."""

    def __init__(self) -> None:
        self._expected: dict[str, str] = {}
        self._hashes: dict[str, object] = {}

    def track(self, algorithm: str) -> None:
        """Start computing a checksum whose value will only be known after the body."""
        if algorithm not in _ALGORITHMS:
            # Limitation: CRC32C and CRC64NVME need botocore's optional CRT extension to
            # compute at speed, so they are accepted without being verified.
            logger.debug("not verifying the %s checksum of a request body", algorithm)
            return
        self._hashes.setdefault(algorithm, _ALGORITHMS[algorithm]())

    def expect(self, algorithm: str, value_base64: str) -> None:
        """Announce the checksum (base64) the body must have; call `track` first for trailers."""
        self.track(algorithm)
        if algorithm in self._hashes:
            self._expected[algorithm] = value_base64.strip()

    def update(self, data: bytes) -> None:
        """Feed the next bytes of the body."""
        for digest in self._hashes.values():
            digest.update(data)

    def verify(self) -> None:
        """Raise BadDigest if any announced checksum differs from the computed one."""
        for algorithm, expected in self._expected.items():
            actual = base64.b64encode(self._hashes[algorithm].digest()).decode()
            if not hmac.compare_digest(actual, expected):
                raise S3Error(
                    "BadDigest",
                    f"The {algorithm.upper()} you specified did not match the computed checksum.",
                )


@dataclass
class Body:
    """A request body ready to stream into the store, with what the client said about it."""

    stream: BinaryIO
    length: int
    sha256: str | None


class LengthReader:
    """Reads exactly `length` bytes of a plain body, failing if the client sends fewer."""

    def __init__(self, source: BinaryIO, length: int, check: ChecksumCheck) -> None:
        self._source = source
        self._remaining = length
        self._check = check
        self._verified = False

    def read(self, size: int = -1) -> bytes:
        """Return up to `size` bytes; at the end of the body, verify its checksums."""
        if self._remaining == 0:
            if not self._verified:
                self._check.verify()
                self._verified = True
            return b""

        wanted = self._remaining if size < 0 else min(size, self._remaining)
        data = _read_source(self._source, wanted)
        if not data:
            raise _incomplete()
        self._remaining -= len(data)
        self._check.update(data)
        return data


class AwsChunkedReader:
    """Decodes an aws-chunked body (unsigned chunks, optional trailers) as it is read."""

    def __init__(
        self,
        source: BinaryIO,
        decoded_length: int,
        check: ChecksumCheck,
        trailer_names: set[str],
    ) -> None:
        self._source = source
        self._decoded_length = decoded_length
        self._check = check
        self._trailer_names = trailer_names
        for name in trailer_names:
            if name.startswith(_CHECKSUM_PREFIX):
                check.track(name.removeprefix(_CHECKSUM_PREFIX))
        self._buffer = b""
        self._chunk_left = 0
        self._received = 0
        self._finished = False

    def read(self, size: int = -1) -> bytes:
        """Return up to `size` decoded bytes; after the last chunk, verify length and trailers."""
        if self._finished:
            return b""
        if self._chunk_left == 0 and not self._next_chunk():
            self._finish()
            return b""

        wanted = self._chunk_left if size < 0 else min(size, self._chunk_left)
        data = self._take(wanted)
        self._chunk_left -= len(data)
        self._received += len(data)
        if self._received > self._decoded_length:
            raise _incomplete()
        if self._chunk_left == 0 and self._take_exact(2) != b"\r\n":
            raise _malformed_chunk()
        self._check.update(data)
        return data

    def _next_chunk(self) -> bool:
        """Read the next chunk header; return False at the final zero-length chunk."""
        size = self._read_line().split(b";", 1)[0].rstrip(b" \t")
        if not _CHUNK_SIZE.fullmatch(size):
            raise _malformed_chunk()
        self._chunk_left = int(size, 16)
        return self._chunk_left > 0

    def _finish(self) -> None:
        """Read the trailers after the last chunk and check the body against them."""
        trailers = {}
        while line := self._read_line():
            name, _, value = line.decode("latin-1").partition(":")
            trailers[name.strip().lower()] = value.strip()
            if len(trailers) > _TRAILER_LIMIT:
                raise _malformed_chunk()

        if self._received != self._decoded_length:
            raise _incomplete()
        if trailers.keys() != self._trailer_names:
            raise S3Error("InvalidRequest", "The trailers differ from those in x-amz-trailer.")
        for name, value in trailers.items():
            if name.startswith(_CHECKSUM_PREFIX):
                self._check.expect(name.removeprefix(_CHECKSUM_PREFIX), value)
        self._check.verify()
        self._finished = True

    def _read_line(self) -> bytes:
        """Return the next CRLF-terminated line without its CRLF."""
        while b"\r\n" not in self._buffer:
            if len(self._buffer) > _LINE_LIMIT:
                raise _malformed_chunk()
            self._fill()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _take(self, size: int) -> bytes:
        """Return between 1 and `size` bytes, from the buffer first."""
        if not self._buffer:
            data = _read_source(self._source, size)
            if not data:
                raise _incomplete()
            return data
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _take_exact(self, size: int) -> bytes:
        """Return exactly `size` bytes."""
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _fill(self) -> None:
        """Append more raw bytes to the buffer, failing if the body has ended."""
        data = _read_source(self._source, _BUFFER_SIZE)
        if not data:
            raise _incomplete()
        self._buffer += data


def check_payload_hash(value: str) -> None:
    """Refuse an x-amz-content-sha256 that is neither a hex SHA-256 nor a known payload mode."""
    if value in (UNSIGNED_PAYLOAD, STREAMING_UNSIGNED_PAYLOAD_TRAILER):
        return
    if value.startswith("STREAMING-"):
        # Limitation: signed aws-chunked payloads (per-chunk signatures, sent by some other
        # SDKs but not by botocore) are not supported.
        raise S3Error("NotImplemented", f"The payload mode {value} is not supported.")
    if len(value) != 64 or any(char not in "0123456789abcdef" for char in value):
        raise S3Error(
            "InvalidArgument",
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER or a valid sha256 value.",
        )


def object_body(
    source: BinaryIO, headers: Mapping[str, str], max_length: int, content_sha256: str
) -> Body:
    """Wrap a PutObject or UploadPart body in the reader its headers call for."""
    check = header_checksums(headers)
    if content_sha256.startswith("STREAMING-"):
        return _chunked_body(source, headers, max_length, content_sha256, check)
    if "aws-chunked" in headers.get("content-encoding", ""):
        raise S3Error("InvalidRequest", "aws-chunked bodies need a STREAMING- payload mode.")

    length = declared_length(headers, max_length)
    sha256 = None if content_sha256 == UNSIGNED_PAYLOAD else content_sha256
    return Body(LengthReader(source, length, check), length, sha256)


def read_small_body(
    source: BinaryIO, headers: Mapping[str, str], max_length: int, content_sha256: str
) -> bytes:
    """Read a whole small body (an XML document), checking its length, SHA-256 and checksums."""
    length = declared_length(headers, max_length, too_large="MaxMessageLengthExceeded")
    reader = LengthReader(source, length, header_checksums(headers))

    data = b""
    while chunk := reader.read(_BUFFER_SIZE):
        data += chunk
    if content_sha256 != UNSIGNED_PAYLOAD:
        actual = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(actual, content_sha256):
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
    return data


def header_checksums(headers: Mapping[str, str]) -> ChecksumCheck:
    """Collect the checksums announced in headers (x-amz-checksum-*, Content-MD5)."""
    check = ChecksumCheck()
    for name, value in headers.items():
        if name.startswith(_CHECKSUM_PREFIX) and name not in _CHECKSUM_SETTINGS:
            check.expect(name.removeprefix(_CHECKSUM_PREFIX), value)
    if "content-md5" in headers:
        check.expect("md5", headers["content-md5"])
    return check


def declared_length(
    headers: Mapping[str, str],
    max_length: int,
    too_large: str = "EntityTooLarge",
    header: str = "content-length",
) -> int:
    """Return a length header as an int, refusing a missing, malformed or too large one."""
    value = headers.get(header, "")
    if not value:
        raise S3Error("MissingContentLength", f"You must provide the {header} HTTP header.")
    length = parse_decimal(value)
    if length is None:
        raise S3Error("InvalidArgument", f"The {header} header is not a number.")
    if length > max_length:
        raise S3Error(too_large, f"The body exceeds the maximum allowed size of {max_length}.")
    return length


def _chunked_body(
    source: BinaryIO,
    headers: Mapping[str, str],
    max_length: int,
    content_sha256: str,
    check: ChecksumCheck,
) -> Body:
    """Wrap an aws-chunked body, which botocore sends with an unsigned payload and a trailer."""
    check_payload_hash(content_sha256)
    decoded = declared_length(headers, max_length, header="x-amz-decoded-content-length")

    trailer_names = {
        name.strip().lower()
        for name in headers.get("x-amz-trailer", "").split(",")
        if name.strip()
    }
    reader = AwsChunkedReader(source, decoded, check, trailer_names)
    return Body(reader, decoded, None)


def _read_source(source: BinaryIO, size: int) -> bytes:
    """Read from the server's input, turning a dropped connection into IncompleteBody."""
    try:
        return source.read(size)
    except (OSError, ValueError) as error:
        raise _incomplete() from error


def _incomplete() -> S3Error:
    """Build S3's error for a body shorter (or longer) than announced."""
    return S3Error(
        "IncompleteBody", "You did not provide the number of bytes specified by the headers."
    )


def _malformed_chunk() -> S3Error:
    """Build the error for a body that is not valid aws-chunked encoding."""
    return S3Error("InvalidRequest", "The aws-chunked body is malformed.")
