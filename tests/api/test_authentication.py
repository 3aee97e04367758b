"""Every endpoint needs a valid Bearer token; errors come in DRF's shape."""

import pytest
from rest_framework.test import APIClient

ENDPOINTS = [
    "/api/v2/job/",
    "/api/v2/jobstep/",
    "/api/v2/catalog/applications/",
    "/api/v2/catalog/clusters/",
    "/api/v2/teams/",
    "/api/v2/profile/settings/",
    "/api/v2/data/session/",
]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_request_without_token_is_refused_with_401(db, path):
    response = APIClient().get(path)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer nope", "Bearer", "Bearer a b", "Token abc"])
def test_request_with_bad_token_is_refused_with_401(alice, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/v2/job/")

    assert response.status_code == 401


def test_token_is_stored_hashed(alice):
    from epic.accounts.models import ApiToken

    token = alice._credentials["HTTP_AUTHORIZATION"].split()[1]
    stored = ApiToken.objects.get(user=alice.user)

    assert token not in stored.key_hash
    assert len(stored.key_hash) == 64


def test_profile_settings_show_display_currency(alice):
    response = alice.get("/api/v2/profile/settings/")

    assert response.status_code == 200
    assert response.json() == {
        "id": alice.user.profile.pk,
        "display_currency": "GBP",
        "display_currency_symbol": "£",
    }


def test_teams_list_shows_only_own_team_with_role(alice, bob):
    response = alice.get("/api/v2/teams/")

    assert response.json()["count"] == 1
    assert response.json()["results"][0]["name"] == "acme"
    assert response.json()["results"][0]["user_role"] == "user"
    assert response.json()["results"][0]["number_of_members"] == 1


def test_other_teams_are_not_found(alice, bob):
    other = bob.get("/api/v2/teams/").json()["results"][0]["id"]

    assert alice.get(f"/api/v2/teams/{other}/").status_code == 404
