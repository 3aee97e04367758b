"""Helpers to submit jobs and drive the worker pass by pass in the test's own thread."""

from __future__ import annotations

import time

import pytest

from epic.jobs.models import Job
from epic.worker.loop import Worker


def script_spec(folder: str, upload=("complete", "failure", "cancel"), partitions=1) -> dict:
    """A one-job array that runs run.sh from epic://folder/."""
    return {
        "name": "script job",
        "config": {"upload": list(upload), "overwrite_existing": True},
        "jobs": [
            {
                "name": folder,
                "spec": {
                    "app_code": "script",
                    "tasks": [{"reference": "run", "partitions": partitions, "runtime": 1}],
                },
                "app_options": {"script": "run.sh"},
                "cluster": {"queue_code": "local"},
                "input_data": {"path": f"epic://{folder}/"},
            }
        ],
    }


@pytest.fixture
def submit_script(alice, upload):
    """Upload run.sh with the given body into a folder and submit it; return the job id."""

    def submit(folder: str, body: str, **spec_options) -> int:
        upload(alice.user, f"{folder}/run.sh", body)
        response = alice.post("/api/v2/job/", script_spec(folder, **spec_options), format="json")
        assert response.status_code == 201, response.json()
        return response.json()[0]["id"]

    return submit


@pytest.fixture
def worker():
    """A worker that stages inline, so that every pass runs on the test's connection."""
    return Worker(staging_threads=0)


def run_until(worker: Worker, predicate, timeout: float = 30.0) -> None:
    """Run worker passes until predicate() holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.run_once()
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("the worker did not get there in time")


def finished(job_id: int):
    """A predicate: the job has reached its end."""
    return lambda: Job.objects.get(pk=job_id).finished
