"""Fill a fresh EPIC database with teams, their users and tokens, and many jobs with steps.

Run as `python -m benchmarks._seed JOBS TEAMS` in the environment the server will have
(EPIC_HOME, EPIC_DATABASE_URL): it migrates the database like `epic` does, inserts everything
with bulk_create, and prints one JSON line: each team's API token and job ids, and row counts.
"""

from __future__ import annotations

import json
import os
import random
import sys
from datetime import timedelta
from decimal import Decimal

from epic.jobs.states import JobState, StepState

STEPS_PER_JOB = 3
JOBS_PER_ARRAY = 10
# Jobs inserted per round, so that memory stays small whatever the total.
JOBS_PER_ROUND = 5000
# Seeded jobs were submitted one every few minutes, the newest just now.
SUBMISSION_GAP = timedelta(minutes=5)
STEP_LENGTH = timedelta(minutes=10)

# How the jobs spread over the life cycle, as weights, with the states of their three steps.
OUTCOMES = [
    (JobState.COMPLETE, 70, (StepState.COMPLETE, StepState.COMPLETE, StepState.COMPLETE)),
    (JobState.FAILED, 10, (StepState.COMPLETE, StepState.FAILED, StepState.SKIPPED)),
    (JobState.CANCELLED, 5, (StepState.COMPLETE, StepState.CANCELLED, StepState.CANCELLED)),
    (JobState.RUNNING, 5, (StepState.COMPLETE, StepState.RUNNING, StepState.PENDING)),
    (JobState.PENDING, 10, (StepState.PENDING, StepState.PENDING, StepState.PENDING)),
]
RAN_STEP_STATES = {StepState.COMPLETE, StepState.FAILED, StepState.RUNNING}
EXIT_CODES = {StepState.COMPLETE: 0, StepState.FAILED: 1}
# Limitation: log tails are three short lines, so rows are smaller and scans faster than in use.
LOG_TAIL = "Time = 0.5\nCourant Number mean: 0.2 max: 0.85\nExecutionTime = 1.2 s\n"


def setup_django() -> None:
    """Configure Django and bring the database and default catalog up to date, as `epic` does."""
    os.umask(0o077)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "epic.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)

    from epic.catalog.defaults import ensure_default_catalog

    ensure_default_catalog()


def create_teams(count: int) -> list[dict]:
    """One team per index, each with one user and one API token."""
    from epic.accounts.services import create_user, issue_token

    teams = []
    for index in range(count):
        name = f"bench-{index:02d}"
        user = create_user(name, name)
        teams.append(
            {
                "team_id": user.memberships.get().team_id,
                "user_id": user.pk,
                "token": issue_token(name),
                "job_ids": [],
            }
        )
    return teams


def create_arrays(teams: list[dict], jobs: int) -> list:
    """The job arrays, JOBS_PER_ARRAY jobs each, given to the teams in turn."""
    from epic.jobs.models import JobArray

    arrays = [
        JobArray(
            team_id=teams[index % len(teams)]["team_id"],
            submitted_by_id=teams[index % len(teams)]["user_id"],
            name=f"array {index}",
        )
        for index in range(-(-jobs // JOBS_PER_ARRAY))
    ]
    return JobArray.objects.bulk_create(arrays, batch_size=2000)


def new_job(number: int, array, state: JobState, catalog: dict):
    """The unsaved job `number` of the seed; the last one was submitted just now."""
    from epic.jobs.models import Job

    created = catalog["now"] - (catalog["jobs"] - 1 - number) * SUBMISSION_GAP
    finished = state in {JobState.COMPLETE, JobState.FAILED, JobState.CANCELLED}
    return Job(
        array_id=array.pk,
        team_id=array.team_id,
        submitted_by_id=array.submitted_by_id,
        name=f"case-{number}",
        app_version=catalog["app_version"],
        queue=catalog["queue"],
        app_options={"script": "run.sh"},
        tasks=[{"reference": "run", "partitions": 1, "runtime": 1}],
        config={"upload": ["complete"], "overwrite_existing": True},
        input_path=f"bench/case-{number}/",
        state=state,
        quoted_cost=Decimal("1.50"),
        created=created,
        staged_in_at=created + timedelta(minutes=1) if state != JobState.PENDING else None,
        finished_at=created + STEPS_PER_JOB * STEP_LENGTH if finished else None,
    )


def new_steps(job, step_states) -> list:
    """The unsaved steps of a saved job, started and ended as their states say."""
    from epic.jobs.models import JobStep

    steps = []
    for index, state in enumerate(step_states):
        ran = state in RAN_STEP_STATES
        start = job.created + timedelta(minutes=2) + index * STEP_LENGTH
        steps.append(
            JobStep(
                job=job,
                team_id=job.team_id,
                index=index,
                step_name=f"step {index + 1}",
                plan={"commands": ["bash run.sh"], "environment": {}},
                state=state,
                exit_code=EXIT_CODES.get(state),
                local_job_id=job.pk * STEPS_PER_JOB + index if ran else None,
                start=start if ran else None,
                end=start + STEP_LENGTH if ran and state != StepState.RUNNING else None,
                stdout_tail=LOG_TAIL if ran else "",
                logs_updated=start + STEP_LENGTH if ran else None,
            )
        )
    return steps


def new_spend(step):
    """The ledger entry of a step that ran."""
    from epic.billing.models import SpendEntry

    return SpendEntry(
        step=step,
        team_id=step.job.team_id,
        month=step.start.date().replace(day=1),
        amount=Decimal("0.50"),
        final=step.end is not None,
    )


def insert_round(numbers: range, arrays: list, catalog: dict, rng: random.Random) -> list:
    """Insert the jobs of `numbers` with their steps and spend; return the saved jobs."""
    from epic.billing.models import SpendEntry
    from epic.jobs.models import Job, JobStep

    weights = [weight for _, weight, _ in OUTCOMES]
    outcomes = rng.choices(OUTCOMES, weights=weights, k=len(numbers))
    jobs = [
        new_job(number, arrays[number // JOBS_PER_ARRAY], outcome[0], catalog)
        for number, outcome in zip(numbers, outcomes, strict=True)
    ]
    jobs = Job.objects.bulk_create(jobs, batch_size=1000)

    steps = []
    for job, outcome in zip(jobs, outcomes, strict=True):
        steps.extend(new_steps(job, outcome[2]))
    steps = JobStep.objects.bulk_create(steps, batch_size=2000)

    spend = [new_spend(step) for step in steps if step.start is not None]
    SpendEntry.objects.bulk_create(spend, batch_size=2000)
    return jobs


def seed(jobs: int, team_count: int) -> list[dict]:
    """Create the teams and `jobs` jobs in one transaction; return the teams with their ids."""
    from django.db import transaction
    from django.utils import timezone

    from epic.catalog.models import ApplicationVersion, Queue

    rng = random.Random(2024)  # noqa: S311 - a repeatable seed, not a secret
    catalog = {
        "app_version": ApplicationVersion.objects.get(app_code="script"),
        "queue": Queue.objects.get(queue_code="local"),
        "now": timezone.now(),
        "jobs": jobs,
    }
    with transaction.atomic():
        teams = create_teams(team_count)
        arrays = create_arrays(teams, jobs)
        by_team = {team["team_id"]: team for team in teams}
        for first in range(0, jobs, JOBS_PER_ROUND):
            numbers = range(first, min(first + JOBS_PER_ROUND, jobs))
            for job in insert_round(numbers, arrays, catalog, rng):
                by_team[job.team_id]["job_ids"].append(job.pk)
    return teams


def counts() -> dict[str, int]:
    """How many rows the seeded tables hold."""
    from epic.accounts.models import Team
    from epic.billing.models import SpendEntry
    from epic.jobs.models import Job, JobArray, JobStep

    models = {
        "teams": Team,
        "job arrays": JobArray,
        "jobs": Job,
        "steps": JobStep,
        "spend entries": SpendEntry,
    }
    return {name: model.objects.count() for name, model in models.items()}


def vacuum() -> None:
    """Bring PostgreSQL to the state autovacuum keeps it in: statistics and visibility map."""
    from django.db import connection

    # Plans differ before and after: a fresh table has no visibility map for index-only scans.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


def main() -> None:
    """Seed the database named by the environment and print the teams as JSON."""
    jobs, team_count = int(sys.argv[1]), int(sys.argv[2])
    setup_django()
    teams = seed(jobs, team_count)
    vacuum()
    for team in teams:
        del team["user_id"]
    print(json.dumps({"teams": teams, "counts": counts()}))


if __name__ == "__main__":
    main()
