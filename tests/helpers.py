"""Helpers to submit script jobs and drive the worker pass by pass in the test's thread."""

from __future__ import annotations

import time

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
