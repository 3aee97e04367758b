"""Budgets: a submission that would take the month's committed spend over a limit is refused.

Every job here is the default script job on the local queue: 1 core x 1 h x 0.05 = 0.05.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from epic.billing.models import SpendEntry
from epic.billing.services import committed_spend
from epic.jobs.models import Job, JobArray, JobStep
from epic.jobs.states import JobState
from epic.projects.services import create_project
from tests.billing.conftest import set_team_billing
from tests.helpers import script_spec

pytestmark = pytest.mark.django_db


def submit(client, jobs: int = 1, project: int | None = None):
    """Submit an array of script jobs reading epic://case/, charged to a project if given."""
    spec = script_spec("case")
    if project is not None:
        spec["jobs"][0]["spec"]["project"] = project
    spec["jobs"] = spec["jobs"] * jobs
    return client.post("/api/v2/job/", spec, format="json")


def charge(job_id: int, amount: str, month=None) -> None:
    """Record a charge on a job's step, as the worker would, this month unless told."""
    step = JobStep.objects.get(job_id=job_id)
    SpendEntry.objects.create(
        step=step,
        team_id=step.job.team_id,
        project_id=step.job.project_id,
        month=month or timezone.now().date().replace(day=1),
        amount=Decimal(amount),
        final=True,
    )


def finish(job_id: int) -> None:
    """Mark a job complete."""
    Job.objects.filter(pk=job_id).update(state=JobState.COMPLETE, finished_at=timezone.now())


@pytest.fixture
def project(alice):
    """A project of acme with a spend limit of 0.05, one job's maximum."""
    project = create_project("CFD-1", "acme")
    project.spend_limit = Decimal("0.05")
    project.save()
    return project


def test_submission_that_reaches_the_limit_exactly_is_accepted(alice, case):
    set_team_billing("acme", monthly_limit=Decimal("0.10"))

    response = submit(alice, jobs=2)

    assert response.status_code == 201
    assert Job.objects.count() == 2


def test_submission_over_the_team_monthly_limit_is_refused_and_creates_nothing(alice, case):
    set_team_billing("acme", monthly_limit=Decimal("0.10"))
    assert submit(alice, jobs=2).status_code == 201

    response = submit(alice)

    assert response.status_code == 400
    assert response.json() == {
        "budget": [
            "This submission's maximum cost 0.05 (GBP) would take this month's "
            "committed spend over the team's monthly limit."
        ]
    }
    assert Job.objects.count() == 2
    assert JobArray.objects.count() == 1


def test_array_over_the_limit_is_refused_whole(alice, case):
    set_team_billing("acme", monthly_limit=Decimal("0.10"))

    response = submit(alice, jobs=3)

    assert response.status_code == 400
    assert response.json()["budget"] == [
        "This submission's maximum cost 0.15 (GBP) would take this month's "
        "committed spend over the team's monthly limit."
    ]
    assert Job.objects.count() == 0
    assert JobArray.objects.count() == 0


def test_committed_spend_is_charges_plus_what_unfinished_jobs_may_still_cost(alice, case):
    done, running, waiting = (job["id"] for job in submit(alice, jobs=3).json())
    charge(done, "0.03")
    finish(done)
    charge(running, "0.02")

    committed = committed_spend(team=alice.user.memberships.get().team)

    # Charged 0.03 + 0.02; the running job may cost 0.05 - 0.02 more, the waiting one 0.05.
    assert committed == Decimal("0.13")
    assert Job.objects.get(pk=waiting).state == JobState.PENDING


def test_finished_job_frees_what_it_was_not_charged(alice, case):
    set_team_billing("acme", monthly_limit=Decimal("0.10"))
    first, second = (job["id"] for job in submit(alice, jobs=2).json())
    charge(first, "0.01")
    finish(first)

    response = submit(alice)

    # 0.01 charged + 0.05 still open + 0.05 asked = 0.11 > 0.10: refused;
    assert response.status_code == 400
    # once the second ends charged 0.02, 0.01 + 0.02 + 0.05 = 0.08 fits.
    charge(second, "0.02")
    finish(second)
    assert submit(alice).status_code == 201


def test_charges_of_an_earlier_month_do_not_count(alice, case):
    set_team_billing("acme", monthly_limit=Decimal("0.05"))
    job_id = submit(alice).json()[0]["id"]
    charge(job_id, "0.05", month=(timezone.now().replace(day=1) - timedelta(days=1)).date())
    finish(job_id)

    response = submit(alice)

    assert response.status_code == 201


def test_submission_over_a_project_spend_limit_is_refused(alice, case, project):
    assert submit(alice, project=project.pk).status_code == 201

    response = submit(alice, project=project.pk)

    assert response.status_code == 400
    assert response.json() == {
        "budget": [
            "This submission's maximum cost 0.05 (GBP) would take this month's "
            "committed spend over the project's limit."
        ]
    }
    assert Job.objects.filter(project=project).count() == 1


def test_project_limit_leaves_jobs_of_other_projects_alone(alice, case, project):
    assert submit(alice, project=project.pk).status_code == 201

    response = submit(alice)

    assert response.status_code == 201
    assert Job.objects.count() == 2


def test_profile_maximum_caps_the_teams_that_share_it_together(alice, bob, case, upload):
    acme = set_team_billing("acme")
    acme.profile.max_limit = Decimal("0.10")
    acme.profile.save()
    set_team_billing("globex", profile=acme.profile)
    upload(bob.user, "case/run.sh", "true\n")
    assert submit(bob).status_code == 201
    assert submit(alice).status_code == 201

    response = submit(alice)

    assert response.status_code == 400
    assert response.json() == {
        "budget": [
            "This submission's maximum cost 0.05 (GBP) would take this month's "
            "committed spend over the billing profile's limit."
        ]
    }
    assert Job.objects.count() == 2


def test_job_waiting_for_authorisation_commits_its_quote(alice, case):
    set_team_billing(
        "acme", monthly_limit=Decimal("0.05"), jobauth_enabled=True, jobauth_all_jobs=True
    )
    assert submit(alice).status_code == 201

    response = submit(alice)

    assert response.status_code == 400
    assert Job.objects.count() == 1
