"""The S3 endpoint's view of one HTTP exchange: the parsed request, the operation and response."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import quote, unquote

from epic.data.s3 import documents
from epic.data.s3.auth import S3Credential, SignedRequest
from epic.data.s3.errors import S3Error
from epic.data.store import LocalObjectStore

# WSGI keeps these two request headers outside the HTTP_ variables.
_PLAIN_HEADERS = {"CONTENT_TYPE": "content-type", "CONTENT_LENGTH": "content-length"}
# Characters kept as they are when escaping a raw path: existing escapes and URI delimiters.
_RAW_PATH_SAFE = "/%~!$&'()*+,;=:@"
# Bounds on one request header (name and value) and on all of them together.
MAX_HEADER_BYTES = 8 * 1024
MAX_HEADER_SECTION_BYTES = 64 * 1024
# Enough digits for any length or count S3 allows, few enough that int() stays cheap.
MAX_DECIMAL_DIGITS = 19
# Only ASCII digits: str.isdigit() also takes "²", which int() refuses, and int() takes "٣".
_DECIMAL = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class S3Request:
    """A path-style S3 request: /bucket or /bucket/key, its query and lower-cased headers."""

    method: str
    raw_path: str
    query_string: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]
    body: BinaryIO

    @property
    def signed(self) -> SignedRequest:
        """The parts of the request its signature covers."""
        return SignedRequest(self.method, self.raw_path, self.query_string, self.headers)

    @property
    def content_sha256(self) -> str:
        """The payload hash the client signed: a hex SHA-256 or an UNSIGNED/STREAMING mode."""
        return self.headers.get("x-amz-content-sha256", "")


@dataclass
class Response:
    """What the endpoint answers: status, headers and a body iterable for the WSGI server."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Iterable[bytes] = ()


@dataclass(frozen=True)
class Operation:
    """Everything an operation handler needs: the store, the request, and who signed it."""

    store: LocalObjectStore
    request: S3Request
    credential: S3Credential
    region: str

    def object_key(self) -> str:
        """Return the request's key once the credential is allowed to reach it."""
        self.authorise(self.request.key)
        return self.request.key

    def authorise(self, key: str) -> None:
        """Refuse a key (or listing prefix) outside the credential's prefix."""
        if not key.startswith(self.credential.prefix):
            raise S3Error("AccessDenied", "Access Denied")


def parse_request(environ: dict) -> S3Request:
    """Read the method, bucket, key, query and headers of a path-style request."""
    query_string = environ.get("QUERY_STRING", "")
    raw_path = environ.get("REQUEST_URI", "").partition("?")[0]
    if raw_path.startswith("/"):
        # WSGI hands over raw bytes as latin-1; escape any a client left unencoded.
        raw_path = quote(raw_path.encode("latin-1"), safe=_RAW_PATH_SAFE)
    else:
        # Servers other than cheroot may not pass the raw URI; re-encode the decoded path.
        raw_path = quote(environ.get("PATH_INFO", "/").encode("latin-1"), safe="/~")

    try:
        path = unquote(raw_path, errors="strict")
        query = _parse_query(query_string)
    except UnicodeDecodeError as error:
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.") from error
    bucket, _, key = path.removeprefix("/").partition("/")
    headers = _headers(environ)
    _check_header_sizes(headers)

    return S3Request(
        method=environ["REQUEST_METHOD"].upper(),
        raw_path=raw_path,
        query_string=query_string,
        bucket=bucket,
        key=key,
        query=query,
        headers=headers,
        body=environ["wsgi.input"],
    )


def parse_decimal(text: str, max_digits: int = MAX_DECIMAL_DIGITS) -> int | None:
    """Return a run of ASCII digits no longer than `max_digits` as an int, else None."""
    if len(text) > max_digits or not _DECIMAL.fullmatch(text):
        return None
    return int(text)


def xml_response(root: documents.ElementTree.Element, status: int = 200) -> Response:
    """Answer with an XML document."""
    body = documents.serialise(root)
    headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
    return Response(status, headers, [body])


def _parse_query(query_string: str) -> dict[str, str]:
    """Decode query parameters; "+" stays a plus sign, as S3 clients encode spaces as %20."""
    query = {}
    for item in query_string.split("&") if query_string else []:
        name, _, value = item.partition("=")
        query[unquote(name, errors="strict")] = unquote(value, errors="strict")
    return query


def _headers(environ: dict) -> dict[str, str]:
    """Collect request headers from a WSGI environ under lower-case HTTP names."""
    headers = {}
    for name, value in environ.items():
        if name.startswith("HTTP_"):
            headers[name[5:].replace("_", "-").lower()] = value
        elif name in _PLAIN_HEADERS and value:
            headers[_PLAIN_HEADERS[name]] = value
    return headers


def _check_header_sizes(headers: dict[str, str]) -> None:
    """Refuse a request with one header, or all of them together, beyond a sane size."""
    # Limitation: the WSGI server has already read the headers into memory by now, and keeps
    # only the last of repeated headers; only its own limit bounds what it reads.
    sizes = [len(name) + len(value) for name, value in headers.items()]
    if max(sizes, default=0) > MAX_HEADER_BYTES or sum(sizes) > MAX_HEADER_SECTION_BYTES:
        raise S3Error(
            "RequestHeaderSectionTooLarge",
            "Your request header section exceeds the maximum allowed size.",
        )
