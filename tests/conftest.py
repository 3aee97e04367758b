"""Fixtures shared by the suite: users with tokens, API clients and isolated state folders."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from epic.accounts.models import Role
from epic.accounts.services import create_user, issue_token
from epic.catalog.defaults import ensure_default_catalog


@pytest.fixture(autouse=True)
def isolated_home(settings, tmp_path):
    """Give each test its own data and work folders."""
    from epic.data.services import object_store

    settings.EPIC_DATA_ROOT = tmp_path / "data"
    settings.EPIC_WORK_ROOT = tmp_path / "work"
    settings.EPIC_S3_ENDPOINT_URL = "http://127.0.0.1:9"
    object_store.cache_clear()
    yield tmp_path
    object_store.cache_clear()


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
