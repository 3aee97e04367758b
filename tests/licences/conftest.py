"""Fixtures of the licence tests: team admins, a licensed application and stored licences."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from epic.accounts.models import Role, Team
from epic.catalog.models import Application
from epic.licences.models import Licence
from epic.licences.services import create_licence
from tests.conftest import client_for


@pytest.fixture
def carol(db, catalog) -> APIClient:
    """An admin of team acme, alice's team."""
    return client_for("carol", "acme", Role.ADMIN)


@pytest.fixture
def olga(db, catalog) -> APIClient:
    """The owner of team acme."""
    return client_for("olga", "acme", Role.OWNER)


@pytest.fixture
def gary(db, catalog) -> APIClient:
    """An admin of team globex, another team."""
    return client_for("gary", "globex", Role.ADMIN)


@pytest.fixture
def fluent(db) -> Application:
    """A catalog application that needs a licence."""
    return Application.objects.create(product_name="Fluent")


@pytest.fixture
def make_licence(db):
    """Store a licence of a team by name, setting the given variables."""

    def make(team: str, variables: dict[str, str], application=None, name="Lic") -> Licence:
        environment = [{"variable_name": key, "value": value} for key, value in variables.items()]
        owner, _ = Team.objects.get_or_create(name=team)
        return create_licence(owner, name, environment, application=application)

    return make
