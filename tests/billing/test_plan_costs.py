"""A job costs at most what its planned steps can be charged, even beyond its tasks."""

import shutil
from datetime import timedelta
from decimal import Decimal

import pytest

from epic.billing.ledger import step_cost
from epic.billing.models import TeamBilling
from epic.jobs.models import Job

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(shutil.which("icoFoam") is None, reason="OpenFOAM is not installed"),
]


def openfoam_spec(app_options: dict) -> dict:
    """An OpenFOAM job whose only task is blockMesh, whatever its options plan."""
    return {
        "config": {"upload": []},
        "jobs": [
            {
                "name": "sneaky",
                "spec": {
                    "app_code": "openfoam-1912",
                    "tasks": [{"reference": "blockMesh", "partitions": 1, "runtime": 1}],
                },
                "app_options": app_options,
                "cluster": {"queue_code": "local"},
                "input_data": {"path": "epic://case/"},
            }
        ],
    }


@pytest.fixture
def case(alice, upload):
    """An input folder for alice."""
    upload(alice.user, "case/system/controlDict", "x\n")


def test_steps_planned_beyond_the_tasks_are_in_the_jobs_maximum(alice, case):
    options = {
        "blockMesh": True,
        "blockMesh_runtime": 1,
        "solver": "icoFoam",
        "solver_runtime": 24,
    }

    job_id = alice.post("/api/v2/job/", openfoam_spec(options), format="json").json()[0]["id"]

    job = Job.objects.get(pk=job_id)
    # blockMesh: 1 core x 1 h x 0.05 = 0.05; solver: 1 core x 24 h x 0.05 = 1.20.
    assert job.quoted_cost == Decimal("1.25")
    steps = list(job.steps.all())
    for step in steps:
        # Each step runs far past its runtime: it is still charged at most that runtime.
        step.start, step.end = job.created, job.created + timedelta(hours=100)
    assert sum((step_cost(step) for step in steps), Decimal(0)) == job.quoted_cost


def test_a_change_that_raises_the_cost_over_the_budget_is_refused(alice, case):
    TeamBilling.of(alice.user.memberships.get().team)
    TeamBilling.objects.filter(team__name="acme").update(monthly_limit=Decimal("0.50"))
    options = {"blockMesh": True, "solver": "icoFoam", "solver_runtime": 1}
    job_id = alice.post("/api/v2/job/", openfoam_spec(options), format="json").json()[0]["id"]

    bigger = {"blockMesh": True, "solver": "icoFoam", "solver_runtime": 24}
    response = alice.patch(f"/api/v2/job/{job_id}/", {"app_options": bigger}, format="json")

    assert response.status_code == 400
    assert "budget" in response.json()
    assert Job.objects.get(pk=job_id).quoted_cost == Decimal("0.10")
