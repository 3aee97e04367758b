"""Projects: the team's billing codes, readable by members, changed by admins and owners."""

from decimal import Decimal

import pytest

from epic.accounts.models import Membership, Role
from epic.projects.models import Project
from epic.projects.services import create_project
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(alice):
    """A project of alice's team, acme."""
    return create_project("CFD-1", "acme", "Wing study")


def test_projects_list_shows_the_team_projects(alice, bob, project):
    create_project("OTHER", "globex")

    response = alice.get("/api/v2/projects/")

    assert response.json()["results"] == [
        {"pk": project.pk, "project_id": "CFD-1", "description": "Wing study", "closed": False}
    ]


def test_projects_list_filters_by_name(alice, project):
    create_project("WIND-2", "acme")

    response = alice.get("/api/v2/projects/", {"name": "wind"})

    assert [row["project_id"] for row in response.json()["results"]] == ["WIND-2"]


def test_project_read_shows_every_field(alice, project):
    project.spend_limit = Decimal("250.00")
    project.save()

    response = alice.get(f"/api/v2/projects/{project.pk}/")

    assert response.status_code == 200
    assert response.json() == {
        "pk": project.pk,
        "project_id": "CFD-1",
        "description": "Wing study",
        "closed": False,
        "all_users": True,
        "authorized_user_profiles": [],
        "has_budget": True,
        "spend_limit": {"amount": "250.00", "currency": "GBP", "currency_symbol": "£"},
        "current_spend": {"amount": "0.00", "currency": "GBP", "currency_symbol": "£"},
    }


def test_project_and_team_money_follow_the_display_currency(alice, project):
    project.spend_limit = Decimal("250.00")
    project.save()
    Membership.objects.filter(user=alice.user).update(role=Role.ADMIN)
    alice.patch("/api/v2/profile/settings/", {"display_currency": "EUR"}, format="json")

    shown = alice.get(f"/api/v2/projects/{project.pk}/").json()
    team = alice.get(f"/api/v2/teams/{project.team_id}/").json()

    # At the default 1.17 euros a pound.
    assert shown["spend_limit"] == {"amount": "292.50", "currency": "EUR", "currency_symbol": "€"}
    assert shown["current_spend"] == {"amount": "0.00", "currency": "EUR", "currency_symbol": "€"}
    assert team["monthly_spend"] == "€0.00"


def test_user_may_not_update_a_project(alice, project):
    response = alice.patch(f"/api/v2/projects/{project.pk}/", {"closed": True}, format="json")

    assert response.status_code == 403
    assert Project.objects.get(pk=project.pk).closed is False


def test_admin_may_close_a_project_and_it_takes_no_jobs(alice, project, upload):
    Membership.objects.filter(user=alice.user).update(role=Role.ADMIN)

    response = alice.patch(f"/api/v2/projects/{project.pk}/", {"closed": True}, format="json")

    assert response.status_code == 200
    assert response.json()["closed"] is True
    upload(alice.user, "case/run.sh", "true\n")
    spec = {
        "config": {"upload": []},
        "jobs": [
            {
                "name": "j",
                "spec": {
                    "app_code": "script",
                    "project": project.pk,
                    "tasks": [{"reference": "run", "partitions": 1, "runtime": 1}],
                },
                "app_options": {"script": "run.sh"},
                "cluster": {"queue_code": "local"},
                "input_data": {"path": "epic://case/"},
            }
        ],
    }
    refused = alice.post("/api/v2/job/", spec, format="json")
    assert refused.status_code == 400
    assert "project" in refused.json()["jobs"]["0"]["spec"]


@pytest.mark.parametrize(
    "body", [{"closed": "yes"}, {"closed": None}, {"description": "x" * 1001}, {"description": 3}]
)
def test_bad_project_update_is_refused_naming_the_field(alice, project, body):
    Membership.objects.filter(user=alice.user).update(role=Role.OWNER)

    response = alice.patch(f"/api/v2/projects/{project.pk}/", body, format="json")

    assert response.status_code == 400
    assert set(response.json()) == set(body)
    assert Project.objects.get(pk=project.pk).description == "Wing study"


def test_other_teams_project_is_not_found(bob, project):
    owner = client_for("olga", "globex", role=Role.OWNER)

    assert bob.get(f"/api/v2/projects/{project.pk}/").status_code == 404
    assert (
        owner.patch(f"/api/v2/projects/{project.pk}/", {"closed": True}, format="json").status_code
        == 404
    )
    assert Project.objects.get(pk=project.pk).closed is False
