"""Every list endpoint answers in a number of queries that does not grow with its rows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from epic.accounts.models import Role
from epic.billing.models import TeamBilling
from epic.licences.services import create_licence
from epic.projects.services import create_project
from tests.conftest import client_for
from tests.helpers import script_spec

pytestmark = pytest.mark.django_db

LISTS = [
    "/api/v2/job/",
    "/api/v2/jobstep/",
    "/api/v2/jobauth/",
    "/api/v2/projects/",
    "/api/v2/licenses/",
    "/api/v2/licenses/templates/",
    "/api/v2/teams/",
    "/api/v2/catalog/applications/",
    "/api/v2/catalog/clusters/",
    "/api/v2/catalog/desktop/",
    "/api/v2/data/file/",
    "/api/v2/data/folder/",
]


def add_objects(client, upload, count: int, start: int) -> None:
    """Give the client's team `count` more of every kind of object."""
    team = client.user.memberships.get().team
    for number in range(start, start + count):
        upload(client.user, f"case{number}/run.sh", "true\n")
        client.post("/api/v2/job/", script_spec(f"case{number}"), format="json")
        create_project(f"P-{number}", team.name)
        create_licence(team, f"licence {number}", [{"variable_name": "KEY", "value": "v-1"}])


def queries(client, path: str) -> int:
    """How many queries one request to `path` makes."""
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return len(captured)


def test_list_query_counts_do_not_grow_with_rows(upload, catalog):
    owner = client_for("olga", "acme", role=Role.OWNER)
    billing = TeamBilling.of(owner.user.memberships.get().team)
    billing.jobauth_enabled, billing.jobauth_all_jobs = True, True
    billing.save()
    add_objects(owner, upload, 2, 0)
    owner.get("/api/v2/data/file/")
    few = {path: queries(owner, path) for path in LISTS}

    add_objects(owner, upload, 8, 2)
    owner.get("/api/v2/data/file/")
    many = {path: queries(owner, path) for path in LISTS}

    assert many == few
    assert max(few.values()) <= 16


def array_of(jobs: int) -> dict:
    """A job array of `jobs` script jobs that all read epic://case/."""
    spec = script_spec("case")
    spec["jobs"] = [{**spec["jobs"][0], "name": f"case {number}"} for number in range(jobs)]
    return spec


def submission_queries(client, jobs: int) -> int:
    """How many queries submitting an array of `jobs` jobs in one request makes."""
    with CaptureQueriesContext(connection) as captured:
        response = client.post("/api/v2/job/", array_of(jobs), format="json")
    assert response.status_code == 201, response.json()
    assert len(response.json()) == jobs
    return len(captured)


def test_array_submission_query_count_does_not_grow_with_jobs(alice, upload):
    upload(alice.user, "case/run.sh", "true\n")
    # The first submission also creates the pricing policy and the team's billing settings.
    submission_queries(alice, 1)
    few = submission_queries(alice, 5)

    many = submission_queries(alice, 50)

    # SQLite takes at most 999 parameters a query, so its INSERTs come in batches of some 30.
    assert many - few <= (50 - 5) // 10
    assert few <= 25


def test_job_reads_take_a_query_per_kind_of_row(alice, upload):
    # The token with its user and profile, the membership, then the rows shown: for a page a
    # count and the jobs (or steps), and for jobs their queues and their steps.
    add_objects(alice, upload, 3, 0)
    job = alice.get("/api/v2/job/").json()["results"][0]
    bounds = {
        "/api/v2/job/": 6,
        f"/api/v2/job/{job['id']}/": 5,
        "/api/v2/jobstep/": 4,
        f"/api/v2/jobstep/?parent_job={job['id']}": 4,
    }

    counts = {path: queries(alice, path) for path in bounds}
    assert all(counts[path] <= bound for path, bound in bounds.items()), counts
