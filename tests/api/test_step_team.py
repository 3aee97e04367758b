"""A step carries its job's team: set when it is made, and filled in for steps made before."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from epic.jobs.models import Job, JobStep
from tests.helpers import script_spec

BEFORE_STEP_TEAMS = ("jobs", "0006_worker_leases")
STEP_TEAMS = ("jobs", "0007_jobstep_team")


def submit(client, upload) -> Job:
    """Submit a one-step script job as the client; the job."""
    upload(client.user, "case/run.sh", "true\n")
    answer = client.post("/api/v2/job/", script_spec("case"), format="json")
    assert answer.status_code == 201
    return Job.objects.get(pk=answer.json()[0]["id"])


def migrate(target: tuple[str, str] | None = None) -> None:
    """Bring the test database to a migration of the jobs app, or to the latest of every app."""
    executor = MigrationExecutor(connection)
    executor.migrate([target] if target else executor.loader.graph.leaf_nodes())


@pytest.mark.django_db
def test_submitted_steps_carry_their_jobs_team(alice, upload):
    job = submit(alice, upload)

    assert list(JobStep.objects.values_list("team_id", flat=True)) == [job.team_id]


@pytest.mark.django_db
def test_step_made_without_a_team_takes_its_jobs(alice, upload):
    job = submit(alice, upload)

    step = JobStep.objects.create(job_id=job.pk, index=1, step_name="again")

    assert JobStep.objects.get(pk=step.pk).team_id == job.team_id


@pytest.mark.django_db(transaction=True)
def test_migration_gives_existing_steps_their_jobs_team(alice, bob, upload):
    jobs = [submit(alice, upload), submit(bob, upload)]
    migrate(BEFORE_STEP_TEAMS)

    try:
        migrate(STEP_TEAMS)
    finally:
        migrate()

    teams = dict(JobStep.objects.values_list("job_id", "team_id"))
    assert teams == {job.pk: job.team_id for job in jobs}
