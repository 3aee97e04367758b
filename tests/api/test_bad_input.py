"""Hostile requests get a 4xx in DRF's shape, never a 500, and change nothing."""

import json

import pytest
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from epic.api.pagination import EpicPagination
from epic.jobs.models import Job

pytestmark = pytest.mark.django_db


def test_deeply_nested_json_is_a_parse_error(alice):
    body = "[" * 100_000 + "]" * 100_000

    response = alice.post("/api/v2/job/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_oversized_body_is_refused_with_413(alice):
    body = json.dumps({"name": "x" * (11 * 1024 * 1024)})

    response = alice.post("/api/v2/job/", body, content_type="application/json")

    assert response.status_code in (400, 413)
    assert Job.objects.count() == 0


@pytest.mark.parametrize("path", ["/api/v2/job/", "/api/v2/teams/", "/api/v2/job/quote/"])
def test_too_many_query_parameters_are_refused_with_400(alice, client, path):
    query = "&".join(f"p{number}=1" for number in range(1001))

    for caller in (alice, client):
        response = caller.get(f"{path}?{query}")

        assert response.status_code == 400
        assert response.json() == {
            "detail": "The request has too many parameters.",
            "code": "parse_error",
        }


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "0x10", "9" * 19, "\u0661", " 5", "5 "])
@pytest.mark.parametrize("path", ["/api/v2/job/", "/api/v2/jobstep/", "/api/v2/teams/"])
def test_bad_page_positions_are_refused_naming_them(alice, path, name, value):
    response = alice.get(path, {name: value})

    assert response.status_code == 400
    assert list(response.json()) == [name]


def test_a_limit_of_zero_is_refused_and_a_large_one_capped(alice):
    assert alice.get("/api/v2/job/", {"limit": "0"}).json() == {"limit": ["Must be at least 1."]}

    asked = APIRequestFactory().get("/api/v2/job/", {"limit": "5000", "offset": "7"})
    request = Request(asked)

    assert EpicPagination().get_limit(request) == 1000
    assert EpicPagination().get_offset(request) == 7


def test_non_json_body_is_refused_with_415(alice):
    response = alice.post("/api/v2/job/", "name=x", content_type="text/plain")

    assert response.status_code == 415


@pytest.mark.parametrize("value", ["²", "99999999999999999999999", "-1", "0", "1e3", "x"])
@pytest.mark.parametrize(
    "filter_path", ["/api/v2/job/?job_array=", "/api/v2/jobstep/?parent_job="]
)
def test_bad_id_filters_are_refused_naming_the_filter(alice, filter_path, value):
    response = alice.get(filter_path + value)

    assert response.status_code == 400
    assert filter_path.split("?")[1].rstrip("=") in response.json()


@pytest.mark.parametrize("value", ["²", "99999999999999999999999", "abc", "-3"])
def test_bad_team_header_is_refused(alice, value):
    response = alice.get("/api/v2/job/", HTTP_X_EPIC_TEAM=value)

    assert response.status_code == 400
    assert "X-EPIC-Team" in response.json()


def test_team_header_naming_another_team_is_not_found(alice, bob):
    other_team = bob.user.memberships.get().team_id

    response = alice.get("/api/v2/job/", HTTP_X_EPIC_TEAM=str(other_team))

    assert response.status_code == 404


def test_unknown_url_answers_json_404(alice):
    response = alice.get("/api/v2/no-such-thing/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}
