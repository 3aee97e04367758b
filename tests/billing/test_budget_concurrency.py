"""Concurrent submissions cannot overrun a budget: 50 at once against room for exactly 10.

Each job is the default script job on the local queue, 0.05; the team's monthly limit is 0.50.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework import serializers

from epic.accounts.models import Membership
from epic.jobs.models import Job
from epic.jobs.serializers import JobArraySpecSerializer
from epic.jobs.services import prepare_binding, submit
from tests.billing.conftest import set_team_billing
from tests.e2e.servers import epic_command, s3_client
from tests.helpers import script_spec

SUBMISSIONS = 50
LIMIT = "0.50"


def at_once(attempt) -> Counter:
    """Run attempt(index, barrier) in SUBMISSIONS threads released together; count outcomes."""
    barrier = threading.Barrier(SUBMISSIONS)
    with ThreadPoolExecutor(SUBMISSIONS) as pool:
        return Counter(pool.map(lambda index: attempt(index, barrier), range(SUBMISSIONS)))


def submit_directly(username: str, barrier: threading.Barrier) -> str:
    """Prepare and submit the script job as a user through the job service, on its connection."""
    try:
        membership = Membership.objects.select_related("team", "user").get(user__username=username)
        spec = JobArraySpecSerializer(data=script_spec("case"))
        spec.is_valid(raise_exception=True)
        prepared = [prepare_binding(job, membership) for job in spec.validated_data["jobs"]]
        barrier.wait()
        submit(spec.validated_data, prepared, membership)
        return "accepted"
    except serializers.ValidationError:
        return "refused"
    finally:
        connection.close()


@pytest.fixture
def postgresql(transactional_db):
    """Skip unless the test database is PostgreSQL, whose row locks the race is about."""
    if connection.vendor != "postgresql":
        pytest.skip("the database-level race runs on PostgreSQL")


def test_parallel_submissions_fill_a_team_budget_exactly(postgresql, alice, case):
    set_team_billing("acme", monthly_limit=Decimal(LIMIT))

    outcomes = at_once(lambda _, barrier: submit_directly("alice", barrier))

    assert outcomes == {"accepted": 10, "refused": 40}
    assert Job.objects.count() == 10


def test_parallel_submissions_of_two_teams_fill_their_profile_exactly(
    postgresql, alice, bob, case, upload
):
    acme = set_team_billing("acme")
    acme.profile.max_limit = Decimal(LIMIT)
    acme.profile.save()
    set_team_billing("globex", profile=acme.profile)
    upload(bob.user, "case/run.sh", "true\n")

    outcomes = at_once(
        lambda index, barrier: submit_directly(("alice", "bob")[index % 2], barrier)
    )

    assert outcomes == {"accepted": 10, "refused": 40}
    assert Job.objects.count() == 10


def call(server, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """Call the live server's API as alice; answer the status and the decoded body."""
    # The server is the test's own, on 127.0.0.1.
    request = urllib.request.Request(  # noqa: S310
        server.api_url.rstrip("/") + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def upload_case(server) -> None:
    """Put run.sh into alice's epic://case/ through the server's S3 endpoint."""
    _, session = call(server, "GET", "/data/session/")
    key = f"{session['s3_obj_key']}case/run.sh"
    s3_client(session).put_object(Bucket=session["s3_location"], Key=key, Body=b"true\n")


@pytest.mark.e2e
def test_parallel_submissions_over_http_fill_the_budget_exactly(server, monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Every job waits for authorisation, so none ends and frees budget during the race.
    epic_command(
        server.home, "admin", "billing", "team", "acme", "--monthly-limit", LIMIT,
        "--jobauth", "yes", "--jobauth-all-jobs", "yes",
    )  # fmt: skip
    upload_case(server)

    def attempt(_, barrier: threading.Barrier) -> int | str:
        barrier.wait()
        try:
            return call(server, "POST", "/job/", script_spec("case"))[0]
        except ConnectionResetError:
            return "connection reset"

    outcomes = at_once(attempt)

    assert call(server, "GET", "/job/?limit=100")[1]["count"] == 10
    assert outcomes == {201: 10, 400: 40}
