"""The spend ledger charges each step once, for the wall clock it used."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from epic.billing.ledger import charge, month_spend
from epic.billing.models import SpendEntry
from epic.catalog.models import Queue
from epic.jobs.models import Job, JobStep
from epic.jobs.states import StepState
from epic.worker.loop import Worker
from tests.billing.conftest import set_team_billing
from tests.helpers import finished, run_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def one_pound_a_core_second(catalog):
    """A price that makes every second of a core cost exactly 1.00."""
    Queue.objects.update(core_hour_price=Decimal(3600))


def expected_charge(step: JobStep, cores: int | None = None) -> Decimal:
    """Cores x whole seconds between the recorded start and end, at 1.00 a core-second."""
    cores = step.cores if cores is None else cores
    return Decimal(cores * int((step.end - step.start).total_seconds())).quantize(Decimal("0.01"))


def running(job_id: int):
    """A predicate: the job's only step runs."""
    return lambda: JobStep.objects.get(job_id=job_id).state == StepState.RUNNING


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
    run_until(worker, running(job_id))

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


def test_worker_restart_mid_job_charges_the_step_once(alice, submit_script, worker):
    job_id = submit_script("case", "sleep 2\n")
    run_until(worker, running(job_id))
    # A pass that watches the running step charges it for what it has used so far.
    run_until(worker, lambda: SpendEntry.objects.filter(step__job_id=job_id).exists())
    assert SpendEntry.objects.get(step__job_id=job_id).final is False

    restarted = Worker(staging_threads=0)
    restarted.recover()
    run_until(restarted, finished(job_id))

    step = JobStep.objects.get(job_id=job_id)
    entry = SpendEntry.objects.get(step=step)
    assert SpendEntry.objects.filter(step__job_id=job_id).count() == 1
    assert entry.final is True
    assert entry.amount == expected_charge(step)
    assert month_spend(team=step.job.team) == entry.amount


def test_rejected_job_is_charged_nothing(alice, carol, submit_script, worker):
    set_team_billing("acme", jobauth_enabled=True, jobauth_all_jobs=True)
    job_id = submit_script("case", "true\n")

    response = carol.put(f"/api/v2/jobauth/{job_id}/", {"state": "REJECTED"}, format="json")
    for _ in range(5):
        worker.run_once()

    assert response.status_code == 200
    assert not SpendEntry.objects.filter(step__job_id=job_id).exists()
    assert month_spend(team=Job.objects.get(pk=job_id).team) == Decimal(0)
    assert alice.get(f"/api/v2/job/{job_id}/").json()["cost"] == "£0.00"


def test_hyperthreaded_step_is_charged_for_the_cores_its_task_reserved(
    alice, submit_script, worker
):
    Queue.objects.filter(queue_code="local").update(threads_per_core=2)
    job_id = submit_script("case", "sleep 1.2\n", partitions=2)

    run_until(worker, finished(job_id))

    # Two partitions share the two threads of one core, as the quote reserved: 1 x 3600.00.
    step = JobStep.objects.get(job_id=job_id)
    assert Job.objects.get(pk=job_id).quoted_cost == Decimal("3600.00")
    assert SpendEntry.objects.get(step=step).amount == expected_charge(step, cores=1)


def test_step_past_its_runtime_is_charged_no_more_than_its_quote(alice, submit_script):
    job_id = submit_script("case", "true\n")
    step = JobStep.objects.get(job_id=job_id)
    step.start = timezone.now() - timedelta(hours=1, minutes=5)
    step.end = timezone.now()
    step.save()

    entry = charge(step, final=True)

    # 1 core for the 1 h quoted (not the 1 h 5 min it ran) x 3600.00 a core-hour = 3600.00
    assert entry.amount == Decimal("3600.00")
    assert entry.amount == Job.objects.get(pk=job_id).quoted_cost
