"""Changing a job before it starts, cancelling single steps, team and profile settings."""

import pytest

from epic.accounts.services import join_team
from epic.catalog.models import Queue
from epic.jobs.models import Job, JobStep
from epic.jobs.states import StepState
from tests.conftest import client_for
from tests.helpers import finished, run_until, script_spec


@pytest.fixture
def pending_job(alice, upload):
    """A submitted script job the worker has not seen."""
    upload(alice.user, "case/run.sh", "true\n")
    return alice.post("/api/v2/job/", script_spec("case"), format="json").json()[0]["id"]


@pytest.mark.django_db
def test_pending_job_options_and_config_can_change(alice, pending_job):
    body = {"app_options": {"script": "run.sh", "arguments": ["fast"]}, "config": {"upload": []}}

    response = alice.patch(f"/api/v2/job/{pending_job}/", body, format="json")

    assert response.status_code == 200
    assert response.json()["app_options"] == {"script": "run.sh", "arguments": ["fast"]}
    assert response.json()["config"]["upload"] == []
    step = JobStep.objects.get(job_id=pending_job)
    assert step.plan["commands"][0]["argv"] == ["/bin/bash", "run.sh", "fast"]


@pytest.mark.django_db
def test_bad_change_is_refused_and_changes_nothing(alice, pending_job):
    body = {"app_options": {"script": "../x.sh"}}

    response = alice.patch(f"/api/v2/job/{pending_job}/", body, format="json")

    assert response.status_code == 400
    assert "script" in response.json()["app_options"]
    assert Job.objects.get(pk=pending_job).app_options == {"script": "run.sh", "arguments": []}


@pytest.mark.django_db(transaction=True)
def test_started_job_cannot_change(alice, pending_job, worker):
    run_until(worker, finished(pending_job))

    response = alice.patch(f"/api/v2/job/{pending_job}/", {"config": {}}, format="json")

    assert response.status_code == 409


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_running_step_stops_it(alice, submit_script, worker):
    job_id = submit_script("case", "sleep 60\n")
    run_until(worker, lambda: JobStep.objects.get(job_id=job_id).state == StepState.RUNNING)
    step_id = JobStep.objects.get(job_id=job_id).pk

    assert alice.post(f"/api/v2/jobstep/{step_id}/cancel/").status_code == 204
    run_until(worker, finished(job_id), timeout=15)

    assert JobStep.objects.get(pk=step_id).state == StepState.CANCELLED
    assert alice.get(f"/api/v2/job/{job_id}/").json()["status"] == "Job Cancelled"


@pytest.mark.django_db(transaction=True)
def test_cancelling_the_waiting_step_of_a_running_job_ends_the_job(alice, submit_script, worker):
    cores = Queue.objects.get(queue_code="local").max_allocation
    blocker = submit_script("busy", "sleep 60\n", partitions=cores)
    waiting = submit_script("case", "true\n")
    run_until(worker, lambda: JobStep.objects.get(job_id=waiting).state == StepState.QUEUED)
    step_id = JobStep.objects.get(job_id=waiting).pk

    assert alice.post(f"/api/v2/jobstep/{step_id}/cancel/").status_code == 204
    run_until(worker, finished(waiting), timeout=15)

    job = alice.get(f"/api/v2/job/{waiting}/").json()
    assert job["status"] == "Job Cancelled"
    assert job["finished"] is True
    assert JobStep.objects.get(pk=step_id).state == StepState.CANCELLED
    assert alice.post(f"/api/v2/job/{blocker}/cancel/").status_code == 204
    run_until(worker, finished(blocker), timeout=30)


@pytest.mark.django_db
def test_other_team_cannot_change_or_cancel(bob, pending_job):
    step_id = JobStep.objects.get(job_id=pending_job).pk

    assert (
        bob.patch(f"/api/v2/job/{pending_job}/", {"config": {}}, format="json").status_code == 404
    )
    assert bob.post(f"/api/v2/jobstep/{step_id}/cancel/").status_code == 404
    assert JobStep.objects.get(pk=step_id).state == StepState.PENDING


@pytest.mark.django_db
def test_teams_role_filter_refuses_unknown_roles(alice):
    assert alice.get("/api/v2/teams/", {"role": "user"}).json()["count"] == 1
    assert alice.get("/api/v2/teams/", {"role": "owner"}).json()["count"] == 0
    assert alice.get("/api/v2/teams/", {"role": "king"}).status_code == 400


@pytest.mark.django_db
def test_display_currency_can_change(alice):
    response = alice.patch("/api/v2/profile/settings/", {"display_currency": "EUR"}, format="json")

    assert response.json()["display_currency"] == "EUR"
    assert response.json()["display_currency_symbol"] == "€"
    bad = alice.patch("/api/v2/profile/settings/", {"display_currency": "XYZ"}, format="json")
    assert bad.status_code == 400
    assert "display_currency" in bad.json()


@pytest.mark.django_db
def test_team_member_count_counts_every_member(alice):
    client_for("carol", "acme")

    team = alice.get("/api/v2/teams/").json()["results"][0]

    assert team["number_of_members"] == 2


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["variables=Ux,p", "variables=Ux&variables=p"])
def test_residual_variables_are_named_repeated_or_comma_separated(alice, pending_job, query):
    fields = {"p": [3.0, 2.0], "Uy": [2.0, 1.0], "Ux": [1.0, 0.5]}
    JobStep.objects.filter(job_id=pending_job).update(
        residuals={"times": [0.1, 0.2], "fields": fields}
    )

    answer = alice.get(f"/api/v2/job/{pending_job}/residuals/?{query}").json()

    assert answer["variables"] == ["Ux", "Uy", "p"]
    assert [series["variable_name"] for series in answer["residual_values"]] == ["time", "Ux", "p"]


@pytest.mark.django_db
def test_a_user_who_joined_another_team_acts_in_it_by_the_header(alice, bob, upload):
    upload(bob.user, "case/run.sh", "true\n")
    job_id = bob.post("/api/v2/job/", script_spec("case"), format="json").json()[0]["id"]
    globex = bob.get("/api/v2/teams/").json()["results"][0]["id"]

    assert alice.get("/api/v2/job/", HTTP_X_EPIC_TEAM=str(globex)).status_code == 404
    join_team("alice", "globex")

    jobs = alice.get("/api/v2/job/", HTTP_X_EPIC_TEAM=str(globex)).json()["results"]
    assert [job["id"] for job in jobs] == [job_id]
    assert alice.get("/api/v2/job/").json()["count"] == 0
