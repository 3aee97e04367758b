"""Fixtures shared by the suite: users with tokens, API clients and isolated state folders."""

from __future__ import annotations

import secrets
import shutil

import pytest
from rest_framework.test import APIClient

from epic.accounts.models import Role
from epic.accounts.services import create_user, issue_token
from epic.catalog.defaults import ensure_default_catalog
from epic.data.paths import user_prefix
from epic.data.services import object_store
from epic.worker.loop import Worker
from tests.e2e.servers import reachable_home
from tests.helpers import script_spec


@pytest.fixture(autouse=True)
def isolated_home(settings):
    """Give each test its own EPIC_HOME, in a folder that job uids can pass through."""
    home = reachable_home()
    settings.EPIC_HOME = home
    settings.EPIC_DATA_ROOT = home / "data"
    settings.EPIC_WORK_ROOT = home / "work"
    settings.EPIC_S3_ENDPOINT_URL = "http://127.0.0.1:9"
    # Job ids restart in every test database; uids must not, or tests would share them.
    settings.EPIC_JOB_UID_BASE = 1_000_000 + secrets.randbelow(4 * 10**7) * 100
    object_store.cache_clear()
    yield home
    object_store.cache_clear()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def catalog(db):
    """The default catalog of this machine."""
    ensure_default_catalog()


def client_for(username: str, team: str, role: str = Role.USER) -> APIClient:
    """An API client authenticated as a new user of `team`."""
    user = create_user(username, team, role=role)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(username)}")
    client.user = user
    return client


@pytest.fixture
def alice(db, catalog) -> APIClient:
    """A user of team acme."""
    return client_for("alice", "acme")


@pytest.fixture
def bob(db, catalog) -> APIClient:
    """A user of another team, globex."""
    return client_for("bob", "globex")


@pytest.fixture
def upload(tmp_path):
    """Put a file into a user's data store, as an S3 upload would."""

    def put(user, key: str, content: str) -> None:
        source = tmp_path / "upload.tmp"
        source.write_text(content)
        object_store().put_file(user_prefix(user) + key, source)

    return put


@pytest.fixture
def submit_script(alice, upload):
    """Upload run.sh with the given body into a folder and submit it; return the job id."""

    def submit(folder: str, body: str, **spec_options) -> int:
        upload(alice.user, f"{folder}/run.sh", body)
        response = alice.post("/api/v2/job/", script_spec(folder, **spec_options), format="json")
        assert response.status_code == 201, response.json()
        return response.json()[0]["id"]

    return submit


@pytest.fixture
def worker():
    """A worker that stages inline, so that every pass runs on the test's connection."""
    return Worker(staging_threads=0)
