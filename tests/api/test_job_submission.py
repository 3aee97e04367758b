"""Job submission: what is accepted, and bad input refused with 400 naming the field."""

import copy

import pytest

from epic.jobs.models import Job

pytestmark = pytest.mark.django_db

SCRIPT_JOB = {
    "name": "run a script",
    "config": {"upload": ["complete"], "overwrite_existing": True, "data_sync_interval": 0},
    "jobs": [
        {
            "name": "one",
            "spec": {
                "app_code": "script",
                "tasks": [{"reference": "run", "partitions": 1, "runtime": 1}],
            },
            "app_options": {"script": "run.sh"},
            "cluster": {"queue_code": "local"},
            "input_data": {"path": "epic://case/"},
        }
    ],
}


def spec_with(**changes):
    """The script job spec with some fields of its first job replaced."""
    spec = copy.deepcopy(SCRIPT_JOB)
    for dotted, value in changes.items():
        target = spec["jobs"][0]
        *parents, leaf = dotted.split("__")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return spec


@pytest.fixture(autouse=True)
def case_folder(alice, upload):
    """Alice's input folder epic://case/ with a script in it."""
    upload(alice.user, "case/run.sh", "true\n")


def test_valid_spec_creates_a_pending_job_with_steps(alice):
    response = alice.post("/api/v2/job/", SCRIPT_JOB, format="json")

    assert response.status_code == 201
    job = response.json()[0]
    assert job["name"] == "one"
    assert job["status"] == "Pending"
    assert job["finished"] is False
    assert job["application_version"] == "script"
    assert job["input_data"] == {"path": "epic://case/"}
    assert [step["step_name"] for step in job["job_steps"]] == ["run"]
    assert job["cost"] == "£0.05"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"spec__app_code": "nope"}, {"spec": {"app_code": ["No application version nope."]}}),
        ({"cluster__queue_code": "nope"}, {"cluster": {"queue_code": ["No queue nope."]}}),
        ({"input_data__path": "epic://case/../other/"}, None),
        ({"input_data__path": "s3://bucket/case/"}, None),
        (
            {"input_data__path": "epic://empty/"},
            {"input_data": {"path": ["epic://empty/ holds no data."]}},
        ),
        ({"app_options": {"script": "../run.sh"}}, None),
        (
            {"app_options": {"script": "run.sh", "tasks": 1}},
            {"app_options": {"tasks": ["Unknown option."]}},
        ),
        ({"spec__tasks": []}, None),
        ({"spec__tasks": [{"reference": "run", "partitions": "1", "runtime": 1}]}, None),
        ({"spec__tasks": [{"reference": "run", "partitions": 10**6, "runtime": 1}]}, None),
        ({"spec__tasks": [{"reference": "run", "partitions": 999, "runtime": 1}]}, None),
        ({"spec__tasks": [{"reference": "run", "partitions": 1, "runtime": 10**6}]}, None),
        ({"name": "x" * 101}, None),
    ],
)
def test_bad_job_is_refused_and_creates_nothing(alice, changes, error):
    response = alice.post("/api/v2/job/", spec_with(**changes), format="json")

    assert response.status_code == 400
    if error is not None:
        assert response.json() == {"jobs": {"0": error}}
    first_key = next(iter(changes)).split("__")[0]
    assert first_key in response.json()["jobs"]["0"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "body", [[], "text", {"jobs": "x"}, {"config": {}, "jobs": []}, {"config": {"upload": ["x"]}}]
)
def test_malformed_spec_is_refused(alice, body):
    response = alice.post("/api/v2/job/", body, format="json")

    assert response.status_code == 400
    assert Job.objects.count() == 0


def test_job_of_another_team_is_not_found(alice, bob):
    job_id = alice.post("/api/v2/job/", SCRIPT_JOB, format="json").json()[0]["id"]

    assert bob.get(f"/api/v2/job/{job_id}/").status_code == 404
    assert bob.post(f"/api/v2/job/{job_id}/cancel/").status_code == 404
    assert bob.get("/api/v2/job/").json()["count"] == 0
    assert Job.objects.get(pk=job_id).cancel_requested is False


def test_quote_prices_each_task_on_each_queue(alice):
    spec = {
        "app_code": "script",
        "tasks": [{"reference": "run", "partitions": 2, "runtime": 3}],
        "queue_code": "local",
    }

    response = alice.post("/api/v2/job/quote/", spec, format="json")

    assert response.status_code == 200
    quote = response.json()
    assert [item["queue_code"] for item in quote["totals"]] == ["local"]
    assert quote["task_quotes"][0]["iaas_cost"]["amount"] == "0.30"
    assert quote["totals"][0]["total"] == {
        "amount": "0.30",
        "currency": "GBP",
        "currency_symbol": "£",
    }


def test_quote_with_unknown_app_code_is_refused(alice):
    spec = {"app_code": "nope", "tasks": [{"reference": "run", "partitions": 1, "runtime": 1}]}

    response = alice.post("/api/v2/job/quote/", spec, format="json")

    assert response.status_code == 400
    assert "app_code" in response.json()
