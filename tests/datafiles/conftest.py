"""Fixtures for the file index tests: removing objects and a real S3 endpoint over the store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import boto3
import pytest
from botocore.config import Config
from cheroot import wsgi
from django.conf import settings

from epic.data.models import DataCredential
from epic.data.paths import user_prefix
from epic.data.s3.app import S3Application
from epic.data.s3.auth import S3Credential
from epic.data.services import object_store


@pytest.fixture
def remove() -> Callable[[object, str], None]:
    """Delete an object from a user's data store, as an S3 delete would."""

    def delete(user, key: str) -> None:
        assert object_store().delete(user_prefix(user) + key)

    return delete


def _as_s3_credential(row: DataCredential) -> S3Credential:
    """The endpoint's view of a credential issued by the API."""
    return S3Credential(
        access_key_id=row.access_key_id,
        secret_key=row.secret_key,
        session_token=row.session_token,
        prefix=row.prefix,
        expires_at=row.expires_at,
    )


@pytest.fixture
def s3_endpoint() -> Iterator[tuple[str, dict[str, S3Credential]]]:
    """Serve this test's data store over S3 on a free 127.0.0.1 port; yield its URL and keys."""
    known: dict[str, S3Credential] = {}
    application = S3Application(
        object_store(), settings.EPIC_S3_BUCKET, settings.EPIC_S3_REGION, known.get
    )
    server = wsgi.Server(("127.0.0.1", 0), application, numthreads=2)
    server.expiration_interval = 0.02
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()

    yield f"http://127.0.0.1:{server.bind_addr[1]}", known

    server.stop()
    thread.join(timeout=10)


@pytest.fixture
def s3_session(s3_endpoint) -> Callable[[object], tuple[object, str]]:
    """Open a boto3 client with a data session the API issues; return it and the user's prefix."""
    url, known = s3_endpoint

    def open_session(client) -> tuple[object, str]:
        answer = client.get("/api/v2/data/session/").json()
        row = DataCredential.objects.get(access_key_id=answer["session_token"]["aws_key_id"])
        known[row.access_key_id] = _as_s3_credential(row)
        token = answer["session_token"]
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=token["aws_key_id"],
            aws_secret_access_key=token["aws_secret_key"],
            aws_session_token=token["aws_session_token"],
            region_name=answer["aws_region"],
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )
        return s3, answer["s3_obj_key"]

    return open_session
