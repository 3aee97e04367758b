"""The spend ledger charges each step once, for the wall clock it used."""

from decimal import Decimal

import pytest

from epic.billing.ledger import charge, month_spend
from epic.billing.models import SpendEntry
from epic.catalog.models import Queue
from epic.jobs.models import Job, JobStep
from epic.worker.loop import Worker
from tests.helpers import finished, run_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def one_pound_a_core_second(catalog):
    """A price that makes every second of a core cost exactly 1.00."""
    Queue.objects.update(core_hour_price=Decimal(3600))


def expected_charge(step: JobStep) -> Decimal:
    """Cores x whole seconds between the recorded start and end, at 1.00 a core-second."""
    return Decimal(step.cores * int((step.end - step.start).total_seconds())).quantize(
        Decimal("0.01")
    )


def test_finished_step_is_charged_its_wall_clock(alice, submit_script, worker):
    job_id = submit_script("case", "sleep 1.2\n")

    run_until(worker, finished(job_id))

    step = JobStep.objects.get(job_id=job_id)
    entry = SpendEntry.objects.get(step=step)
    assert entry.final is True
    assert entry.amount == expected_charge(step)
    assert entry.amount >= Decimal("1.00")
    assert month_spend(team=step.job.team) == entry.amount
    assert alice.get(f"/api/v2/job/{job_id}/").json()["cost"] == f"£{entry.amount}"


def test_charging_again_after_a_restart_does_not_charge_twice(alice, submit_script, worker):
    job_id = submit_script("case", "sleep 1.2\n")
    run_until(worker, finished(job_id))
    step = JobStep.objects.get(job_id=job_id)
    before = month_spend(team=step.job.team)

    restarted = Worker(staging_threads=0)
    restarted.recover()
    charge(step, final=True)

    assert SpendEntry.objects.filter(step=step).count() == 1
    assert month_spend(team=step.job.team) == before


def test_cancelled_job_is_charged_only_for_what_ran(alice, submit_script, worker):
    job_id = submit_script("case", "sleep 60\n")
    run_until(worker, lambda: JobStep.objects.get(job_id=job_id).state == "running")

    alice.post(f"/api/v2/job/{job_id}/cancel/")
    run_until(worker, finished(job_id), timeout=15)

    step = JobStep.objects.get(job_id=job_id)
    assert SpendEntry.objects.get(step=step).amount == expected_charge(step)
    assert SpendEntry.objects.get(step=step).amount < Decimal("10.00")


def test_job_cancelled_before_it_ran_is_charged_nothing(alice, submit_script, worker):
    job_id = submit_script("case", "true\n")

    alice.post(f"/api/v2/job/{job_id}/cancel/")
    run_until(worker, finished(job_id))

    assert not SpendEntry.objects.filter(step__job_id=job_id).exists()
    assert Job.objects.get(pk=job_id).finished
    assert alice.get(f"/api/v2/job/{job_id}/").json()["cost"] == "£0.00"
