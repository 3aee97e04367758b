"""Job authorisation: a job over the team's cost threshold waits for an admin's decision.

Acme's threshold is 0.04; the default script job costs 0.05, so every one of them waits.
"""

from decimal import Decimal

import pytest

from epic.billing.models import JobAuthDecision
from epic.catalog.models import Application
from epic.jobs.models import Job, JobStep
from epic.jobs.states import JobState, StepState
from tests.billing.conftest import set_team_billing
from tests.helpers import finished, run_until, script_spec

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def threshold(alice):
    """Acme's jobs costing more than 0.04 need authorisation."""
    set_team_billing("acme", jobauth_enabled=True, jobauth_cost_threshold=Decimal("0.04"))


@pytest.fixture
def submit_as(upload):
    """Submit the script job as a member of acme; answer the job's JSON."""

    def submit(client, body: str = "true\n") -> dict:
        upload(client.user, "case/run.sh", body)
        response = client.post("/api/v2/job/", script_spec("case"), format="json")
        assert response.status_code == 201, response.json()
        return response.json()[0]

    return submit


@pytest.fixture
def waiting(alice, submit_as) -> int:
    """The id of a job alice submitted that waits for authorisation."""
    return submit_as(alice)["id"]


def decide(client, job_id: int, state: str, path: str = "/api/v2/jobauth/{}/"):
    """PUT a decision on a job."""
    return client.put(path.format(job_id), {"state": state}, format="json")


def auth_status(job_id: int, state: str, permissions: str) -> dict:
    """The authorisation status of alice's 0.05 script job, as the API shows it."""
    job = Job.objects.get(pk=job_id)
    return {
        "required": True,
        "state": state,
        "job": {
            "id": job_id,
            "name": "case",
            "app": "Script",
            "cost": "£0.05",
            "submitted_by": "alice",
            # As /job/ shows it: Z for UTC.
            "submitted_at": job.created.isoformat().replace("+00:00", "Z"),
        },
        "user_profile": {"display_name": "alice"},
        "permissions": permissions,
    }


def test_long_names_are_cut_to_what_epiccore_accepts(alice, carol, waiting):
    Application.objects.filter(product_name="Script").update(product_name="S" * 40)
    alice.user.first_name, alice.user.last_name = "Alice", "Q" * 40
    alice.user.save()

    status = carol.get(f"/api/v2/jobauth/{waiting}/").json()

    # epiccore refuses an app or a display name over 30 characters.
    assert status["job"]["app"] == "S" * 30
    assert status["user_profile"]["display_name"] == "Alice " + "Q" * 24


def test_job_over_the_threshold_is_created_waiting_for_authorisation(alice, submit_as):
    job = submit_as(alice)

    assert job["requires_auth"] is True
    assert job["status"] == "Pending"
    assert Job.objects.get(pk=job["id"]).auth_state == "PENDING"


def test_job_at_the_threshold_needs_no_authorisation(alice, submit_as):
    set_team_billing("acme", jobauth_cost_threshold=Decimal("0.05"))

    job = submit_as(alice)

    assert job["requires_auth"] is False
    assert Job.objects.get(pk=job["id"]).auth_state == ""


@pytest.mark.django_db(transaction=True)
def test_waiting_job_is_never_dispatched(alice, waiting, worker):
    for _ in range(10):
        worker.run_once()

    job = Job.objects.get(pk=waiting)
    step = JobStep.objects.get(job=job)
    assert job.state == JobState.PENDING
    assert job.staged_in_at is None
    assert step.state == StepState.PENDING
    assert step.start is None


def test_jobauth_list_shows_the_waiting_jobs_to_an_admin(carol, waiting):
    response = carol.get("/api/v2/jobauth/")

    assert response.status_code == 200
    assert response.json() == {
        "count": 1,
        "next": None,
        "previous": None,
        "results": [auth_status(waiting, "PENDING", "decide")],
    }


def test_jobauth_list_leaves_out_decided_jobs(alice, carol, submit_as):
    authorised, waiting = submit_as(alice)["id"], submit_as(alice)["id"]
    decide(carol, authorised, "AUTHORISED")

    response = carol.get("/api/v2/jobauth/")

    assert [row["job"]["id"] for row in response.json()["results"]] == [waiting]


@pytest.mark.django_db(transaction=True)
def test_authorised_job_runs_to_completion(alice, carol, waiting, worker):
    response = decide(carol, waiting, "AUTHORISED")
    run_until(worker, finished(waiting))

    assert response.status_code == 200
    assert response.json() == auth_status(waiting, "AUTHORISED", "decide")
    job = alice.get(f"/api/v2/job/{waiting}/").json()
    assert job["status"] == "Job Complete"
    assert job["job_steps"][0]["status"] == "Step Complete"


@pytest.mark.django_db(transaction=True)
def test_rejected_job_ends_without_running(alice, carol, waiting, worker):
    response = decide(carol, waiting, "REJECTED")
    for _ in range(5):
        worker.run_once()

    assert response.status_code == 200
    assert response.json()["state"] == "REJECTED"
    job = alice.get(f"/api/v2/job/{waiting}/").json()
    assert job["status"] == "Job Rejected"
    assert job["finished"] is True
    assert job["status_reason"] == "Rejected by carol."
    assert job["cost"] == "£0.00"
    assert job["job_steps"][0]["status"] == "Step Cancelled"
    assert job["job_steps"][0]["start"] is None


def test_every_decision_is_recorded_with_who_and_when(alice, carol, owen, submit_as):
    authorised, rejected = submit_as(alice)["id"], submit_as(alice)["id"]

    decide(carol, authorised, "AUTHORISED")
    decide(owen, rejected, "REJECTED")

    decisions = JobAuthDecision.objects.order_by("id")
    assert [(d.job_id, d.state, d.decided_by.username) for d in decisions] == [
        (authorised, "AUTHORISED", "carol"),
        (rejected, "REJECTED", "owen"),
    ]
    assert all(decision.decided_at is not None for decision in decisions)


def test_user_may_not_authorise(alice, waiting):
    response = decide(alice, waiting, "AUTHORISED")

    assert response.status_code == 403
    assert Job.objects.get(pk=waiting).auth_state == "PENDING"
    assert not JobAuthDecision.objects.exists()


def test_user_sees_a_waiting_job_without_the_right_to_decide(alice, waiting):
    response = alice.get(f"/api/v2/jobauth/{waiting}/")

    assert response.json() == auth_status(waiting, "PENDING", "view")


def test_admin_may_not_authorise_their_own_job(carol, submit_as):
    job_id = submit_as(carol)["id"]

    response = decide(carol, job_id, "AUTHORISED")

    assert response.status_code == 403
    assert Job.objects.get(pk=job_id).auth_state == "PENDING"


def test_owner_may_authorise_their_own_job(owen, submit_as):
    job_id = submit_as(owen)["id"]

    response = decide(owen, job_id, "AUTHORISED")

    assert response.status_code == 200
    assert Job.objects.get(pk=job_id).auth_state == "AUTHORISED"
    assert JobAuthDecision.objects.get().decided_by.username == "owen"


def test_job_auth_endpoint_reads_what_jobauth_reads(carol, waiting):
    by_job = carol.get(f"/api/v2/job/{waiting}/auth/")
    by_jobauth = carol.get(f"/api/v2/jobauth/{waiting}/")

    assert by_job.status_code == 200
    assert by_job.json() == by_jobauth.json() == auth_status(waiting, "PENDING", "decide")


def test_job_auth_endpoint_decides_like_jobauth(carol, waiting):
    response = decide(carol, waiting, "REJECTED", path="/api/v2/job/{}/auth/")

    assert response.status_code == 200
    assert response.json() == auth_status(waiting, "REJECTED", "decide")
    assert Job.objects.get(pk=waiting).state == JobState.REJECTED
    assert JobAuthDecision.objects.get().state == "REJECTED"


def test_job_auth_endpoint_refuses_a_user_too(alice, waiting):
    response = decide(alice, waiting, "AUTHORISED", path="/api/v2/job/{}/auth/")

    assert response.status_code == 403


def test_job_without_authorisation_reads_as_authorised(alice, carol, submit_as):
    set_team_billing("acme", jobauth_enabled=False)
    job_id = submit_as(alice)["id"]

    by_job = carol.get(f"/api/v2/job/{job_id}/auth/")

    assert by_job.json()["required"] is False
    assert by_job.json()["state"] == "AUTHORISED"
    assert carol.get(f"/api/v2/jobauth/{job_id}/").status_code == 404


@pytest.mark.parametrize(
    "path", ["/api/v2/jobauth/{}/", "/api/v2/job/{}/auth/"], ids=["jobauth", "job-auth"]
)
def test_another_team_gets_404(bob, waiting, path):
    assert bob.get(path.format(waiting)).status_code == 404
    assert decide(bob, waiting, "AUTHORISED", path=path).status_code == 404
    assert bob.get("/api/v2/jobauth/").json()["count"] == 0
    assert Job.objects.get(pk=waiting).auth_state == "PENDING"


def test_decided_job_cannot_be_decided_again(carol, owen, waiting):
    decide(carol, waiting, "AUTHORISED")

    response = decide(owen, waiting, "REJECTED")

    assert response.status_code == 409
    assert Job.objects.get(pk=waiting).auth_state == "AUTHORISED"
    assert JobAuthDecision.objects.count() == 1


def test_pending_is_not_a_decision(carol, waiting):
    response = decide(carol, waiting, "PENDING")

    assert response.status_code == 400
    assert list(response.json()) == ["state"]


@pytest.mark.django_db(transaction=True)
def test_waiting_job_cancelled_by_its_submitter_cannot_be_decided(alice, carol, waiting, worker):
    alice.post(f"/api/v2/job/{waiting}/cancel/")
    run_until(worker, finished(waiting))

    response = decide(carol, waiting, "REJECTED")

    assert response.status_code == 409
    assert Job.objects.get(pk=waiting).state == JobState.CANCELLED
    assert carol.get("/api/v2/jobauth/").json()["count"] == 0


def test_rejected_job_frees_the_budget_it_held(alice, carol, submit_as):
    set_team_billing("acme", monthly_limit=Decimal("0.05"))
    job_id = submit_as(alice)["id"]
    decide(carol, job_id, "REJECTED")

    response = alice.post("/api/v2/job/", script_spec("case"), format="json")

    assert response.status_code == 201
