"""Fixtures for the data store tests: a store in a temp folder and a real S3 endpoint over it."""

from __future__ import annotations

import hashlib
import http.client
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from cheroot import wsgi

from epic.data.s3.app import S3Application
from epic.data.s3.auth import S3Credential
from epic.data.store import LocalObjectStore

BUCKET = "epic"
REGION = "us-east-1"
USER_PREFIX = "user-3/"
OTHER_PREFIX = "user-4/"


def md5_hex(data: bytes) -> str:
    """Return the hex MD5 of bytes: the ETag S3 gives an object uploaded in one piece."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _credential(key_id: str, prefix: str, lifetime: timedelta) -> S3Credential:
    """Make a throwaway credential valid for `lifetime` from now (negative: already expired)."""
    return S3Credential(
        access_key_id=key_id,
        secret_key=f"secret-of-{key_id}",
        session_token=f"token-of-{key_id}",
        prefix=prefix,
        expires_at=datetime.now(UTC) + lifetime,
    )


@pytest.fixture
def credentials() -> dict[str, S3Credential]:
    """The endpoint's known credentials by access key id: two users and an expired key."""
    hour = timedelta(hours=1)
    known = [
        _credential("AKUSER3", USER_PREFIX, hour),
        _credential("AKUSER4", OTHER_PREFIX, hour),
        _credential("AKEXPIRED", USER_PREFIX, -hour),
    ]
    return {credential.access_key_id: credential for credential in known}


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    """An empty object store in a temporary folder."""
    return LocalObjectStore(tmp_path / "store")


@pytest.fixture
def endpoint(store: LocalObjectStore, credentials: dict[str, S3Credential]) -> Iterator[str]:
    """Serve the store over S3 with cheroot on a free 127.0.0.1 port; yield its URL."""
    application = S3Application(store, BUCKET, REGION, credentials.get)
    server = wsgi.Server(("127.0.0.1", 0), application, numthreads=4)
    # The serving loop notices stop() only between polls; poll often so teardown is quick.
    server.expiration_interval = 0.02
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()

    yield f"http://127.0.0.1:{server.bind_addr[1]}"

    server.stop()
    thread.join(timeout=10)


@pytest.fixture
def make_client(endpoint: str, credentials: dict[str, S3Credential]) -> Callable[..., object]:
    """Build a boto3 S3 client for a known credential, with any field overridden."""

    def build(key_id: str = "AKUSER3", **overrides: str) -> object:
        credential = credentials.get(key_id) or _credential(key_id, "", timedelta(hours=1))
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=key_id,
            aws_secret_access_key=overrides.get("secret", credential.secret_key),
            aws_session_token=overrides.get("token", credential.session_token),
            region_name=overrides.get("region", REGION),
            # One attempt, so refusals surface at once instead of being retried.
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    return build


@pytest.fixture
def s3(make_client: Callable[..., object]) -> object:
    """A boto3 client signed as the user whose prefix is user-3/."""
    return make_client()


@dataclass
class RawResponse:
    """Status, headers and body of a hand-made request."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class SignedRaw:
    """A request signed by botocore's own SigV4 signer, ready to send by hand."""

    method: str
    target: str
    headers: dict[str, str]


@pytest.fixture
def sign(endpoint: str, credentials: dict[str, S3Credential]) -> Callable[..., SignedRaw]:
    """Sign a request as botocore would, for tests that must send bodies botocore never sends."""

    def build(
        method: str,
        key: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        query: str = "",
        trailer: bool = False,
    ) -> SignedRaw:
        credential = credentials["AKUSER3"]
        url = f"{endpoint}/{BUCKET}/{quote(key, safe='/~')}" + (f"?{query}" if query else "")
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
        if trailer:
            algorithm = {"in": "trailer", "algorithm": "crc32", "name": "x-amz-checksum-crc32"}
            request.context["checksum"] = {"request_algorithm": algorithm}
        keys = Credentials(
            credential.access_key_id, credential.secret_key, credential.session_token
        )
        S3SigV4Auth(keys, "s3", REGION).add_auth(request)

        target = urlsplit(url)._replace(scheme="", netloc="").geturl()
        return SignedRaw(method, target, dict(request.headers.items()))

    return build


@pytest.fixture
def send(endpoint: str) -> Callable[..., RawResponse]:
    """Send a signed request with any body (bytes, or an iterable for HTTP chunked encoding)."""

    def deliver(signed: SignedRaw, body: object = b"") -> RawResponse:
        connection = http.client.HTTPConnection("127.0.0.1", urlsplit(endpoint).port, timeout=30)
        try:
            connection.request(signed.method, signed.target, body=body, headers=signed.headers)
            response = connection.getresponse()
            return RawResponse(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    return deliver
