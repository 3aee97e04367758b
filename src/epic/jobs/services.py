"""Submitting, quoting and cancelling jobs: the rules between the API and the worker."""

from __future__ import annotations

import logging
from dataclasses import asdict
from decimal import Decimal
from functools import partial

from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from epic.api.exceptions import Conflict
from epic.billing.ledger import planned_maximum
from epic.billing.models import TeamBilling
from epic.billing.pricing import CURRENCY_SYMBOLS
from epic.billing.services import (
    TeamPricing,
    check_budgets,
    needs_authorisation,
    quote_on_queues,
    quote_tasks,
)
from epic.catalog.models import ApplicationVersion, Queue
from epic.data.paths import user_prefix
from epic.data.services import object_store
from epic.jobs.models import Job, JobArray, JobStep
from epic.jobs.states import ACTIVE_STEP_STATES, AuthState, JobState, StepState
from epic.projects.models import Project
from epic.software.base import StepPlan, TaskSpec
from epic.software.registry import get_driver
from epic.worker import lifecycle
from epic.worker.wakeup import wake_worker

logger = logging.getLogger(__name__)

# Rows of one bulk INSERT at most, so that none nears PostgreSQL's 65,535 query parameters.
ROWS_PER_INSERT = 500


def find_version(app_code: str) -> ApplicationVersion:
    """The application version with this code, or a field error on app_code."""
    version = ApplicationVersion.objects.filter(app_code=app_code).first()
    if version is None:
        raise serializers.ValidationError({"app_code": [f"No application version {app_code}."]})
    return version


def find_queue(queue_code: str, version: ApplicationVersion) -> Queue:
    """The queue with this code that runs `version` and takes jobs, or a field error."""
    queue = Queue.objects.select_related("cluster").filter(queue_code=queue_code).first()
    if queue is None:
        raise serializers.ValidationError({"queue_code": [f"No queue {queue_code}."]})
    if not version.queues.filter(pk=queue.pk).exists():
        raise serializers.ValidationError(
            {"queue_code": [f"{version.app_code} is not available on {queue_code}."]}
        )
    if queue.maintenance_mode:
        raise serializers.ValidationError({"queue_code": [f"{queue_code} is in maintenance."]})
    return queue


def find_project(project_id: int | None, membership) -> Project | None:
    """The team project the user may bill, None for no project, or a field error."""
    if project_id in (None, -1):
        return None
    project = Project.objects.filter(pk=project_id, team=membership.team).first()
    if project is None:
        raise serializers.ValidationError({"project": [f"No project {project_id}."]})
    if not project.may_bill(membership.user):
        raise serializers.ValidationError({"project": ["This project takes no jobs from you."]})
    return project


def check_input_exists(folder: str, user) -> None:
    """Refuse an input folder that holds nothing in the user's data store."""
    if next(iter(object_store().list(user_prefix(user) + folder)), None) is None:
        raise serializers.ValidationError(
            {"input_data": {"path": [f"epic://{folder} holds no data."]}}
        )


def task_specs(tasks: list[dict]) -> list[TaskSpec]:
    """TaskSpec objects from validated task dictionaries."""
    return [TaskSpec(**task) for task in tasks]


def check_fits(plans: list[StepPlan], queue: Queue) -> None:
    """Refuse steps that need more cores or hours than the queue allows."""
    for plan in plans:
        cores = plan.num_tasks * plan.threads_per_task
        if cores > queue.max_allocation:
            raise serializers.ValidationError(
                {
                    "tasks": [
                        f"{plan.name} needs {cores} cores; {queue.queue_code} allows "
                        f"{queue.max_allocation}."
                    ]
                }
            )
        if plan.max_runtime_hours > queue.max_runtime:
            raise serializers.ValidationError(
                {
                    "tasks": [
                        f"{plan.name} asks for {plan.max_runtime_hours} h; "
                        f"{queue.queue_code} allows {queue.max_runtime} h."
                    ]
                }
            )


class SubmissionLookups:
    """What the jobs of one submission share, looked up once per distinct key.

    One lives for one request only, since the catalog and prices can change between requests.
    A lookup that fails is not kept: it fails again, the same way, for the next job that asks.
    """

    def __init__(self, membership) -> None:
        self.membership = membership
        self.pricing = TeamPricing(membership.team)
        self._found: dict[tuple, object] = {}

    def _once(self, look_up, *arguments):
        """What look_up(*arguments) answers, asked on the first call with these arguments."""
        key = (look_up, *arguments)
        if key not in self._found:
            self._found[key] = look_up(*arguments)
        return self._found[key]

    def version(self, app_code: str) -> ApplicationVersion:
        """find_version, once per application code."""
        return self._once(find_version, app_code)

    def queue(self, queue_code: str, version: ApplicationVersion) -> Queue:
        """find_queue, once per queue code and version."""
        return self._once(find_queue, queue_code, version)

    def project(self, project_id: int | None) -> Project | None:
        """find_project, once per project id."""
        return self._once(find_project, project_id, self.membership)

    def check_input(self, folder: str) -> None:
        """check_input_exists, once per input folder."""
        self._once(check_input_exists, folder, self.membership.user)


def prepare_binding(binding: dict, membership, lookups: SubmissionLookups | None = None) -> dict:
    """Resolve one job of a submission against the catalog; raise errors keyed by field.

    Pass the same `lookups` for every job of one request, to look up what they share once.
    """
    lookups = lookups or SubmissionLookups(membership)
    spec = binding["spec"]
    try:
        version = lookups.version(spec["app_code"])
    except serializers.ValidationError as error:
        raise serializers.ValidationError({"spec": error.detail}) from error
    try:
        queue = lookups.queue(binding["cluster"]["queue_code"], version)
    except serializers.ValidationError as error:
        raise serializers.ValidationError({"cluster": error.detail}) from error

    lookups.check_input(binding["input_data"]["path"])
    driver = get_driver(version.driver)
    tasks = task_specs(spec["tasks"])
    try:
        options = driver.validate(binding["app_options"], tasks)
    except serializers.ValidationError as error:
        # Drivers report task errors under "tasks"; an option of that name is no task error.
        about_tasks = "tasks" in error.detail and "tasks" not in binding["app_options"]
        key = "spec" if about_tasks else "app_options"
        raise serializers.ValidationError({key: error.detail}) from error
    plans = driver.plan_steps(options, tasks)
    try:
        check_fits(plans, queue)
        project = lookups.project(spec.get("project"))
    except serializers.ValidationError as error:
        raise serializers.ValidationError({"spec": error.detail}) from error

    # The job costs at most what its tasks are quoted at, so that a quote and its job agree.
    refusal = quote_tasks(lookups.pricing.rates(queue, version), tasks)
    if isinstance(refusal, str):
        raise serializers.ValidationError({"spec": {"tasks": [refusal]}})
    cost, costs = maximum_costs(queue, version, membership.team, tasks, plans, lookups.pricing)
    return {
        **binding,
        "version": version,
        "queue": queue,
        "options": options,
        "plans": plans,
        "project": project,
        "cost": cost,
        "costs": costs,
    }


@transaction.atomic
def submit(array_spec: dict, prepared: list[dict], membership) -> list[Job]:
    """Create the array, its jobs and their steps in one transaction, then wake the worker."""
    billing = lock_team_budget(membership.team)
    check_array_budgets(membership.team, prepared)
    common = array_spec.get("common_data") or {}
    array = JobArray.objects.create(
        team=membership.team,
        name=array_spec["name"],
        submitted_by=membership.user,
        common_path=common.get("path", ""),
    )
    jobs = _create_jobs(array, prepared, array_spec["config"], membership, billing)
    transaction.on_commit(wake_worker)
    logger.info("Array %s: %d jobs submitted by %s", array.pk, len(jobs), membership.user)
    return jobs


def maximum_costs(
    queue, version, team, tasks, plans, pricing: TeamPricing | None = None
) -> tuple[Decimal, dict[str, str]]:
    """The most a job's planned steps can be charged: in the base currency, and as shown in
    each display currency (items converted and rounded, then added, as a quote shows them).

    Steps are priced as the ledger will charge them, so a job never costs more than this,
    whatever steps its options plan beyond its tasks. Pass `pricing` to price many jobs alike.
    """
    pricing = pricing or TeamPricing(team)
    task_rows = [asdict(task) for task in tasks]
    costs = {}
    for currency in CURRENCY_SYMBOLS:
        rates = pricing.rates(queue, version, currency)
        prices = [
            planned_maximum(rates, task_rows, plan.name, _cores(plan), plan.max_runtime_hours)
            for plan in plans
        ]
        costs[currency] = str(sum((price.total for price in prices), Decimal(0)))
    return Decimal(costs[pricing.policy.base_currency]), costs


def _cores(plan: StepPlan) -> int:
    """Cores a planned step occupies."""
    return plan.num_tasks * plan.threads_per_task


def lock_team_budget(team) -> TeamBilling:
    """Serialise submissions of one team, so that concurrent ones cannot overrun a budget;
    return the team's billing settings as read under the lock.

    On PostgreSQL this locks the team's billing row; SQLite's IMMEDIATE transactions already
    let one writer in at a time.
    """
    TeamBilling.of(team)
    return TeamBilling.objects.select_for_update().get(team=team)


def check_array_budgets(team, prepared: list[dict]) -> None:
    """Refuse the whole array if its maximum cost would overrun a team or project limit."""
    check_budgets(team, None, sum((binding["cost"] for binding in prepared), Decimal(0)))
    by_project: dict[int, tuple] = {}
    for binding in prepared:
        if binding["project"] is not None:
            project, cost = by_project.get(binding["project"].pk, (binding["project"], 0))
            by_project[project.pk] = (project, cost + binding["cost"])
    for project, cost in by_project.values():
        check_budgets(team, project, cost)


def _create_jobs(
    array: JobArray, prepared: list[dict], config: dict, membership, billing: TeamBilling
) -> list[Job]:
    """Create the jobs of prepared bindings and their steps, in as few INSERTs as can be."""
    jobs = Job.objects.bulk_create(
        [_job(array, binding, config, membership, billing) for binding in prepared],
        batch_size=ROWS_PER_INSERT,
    )
    steps = [
        _step(job, index, plan)
        for job, binding in zip(jobs, prepared, strict=True)
        for index, plan in enumerate(binding["plans"])
    ]
    JobStep.objects.bulk_create(steps, batch_size=ROWS_PER_INSERT)
    return jobs


def _job(array: JobArray, binding: dict, config: dict, membership, billing: TeamBilling) -> Job:
    """The unsaved job of a prepared binding."""
    requires_auth = needs_authorisation(membership.team, binding["cost"], billing)
    return Job(
        requires_auth=requires_auth,
        auth_state=AuthState.PENDING if requires_auth else "",
        tasks=[asdict(task) for task in task_specs(binding["spec"]["tasks"])],
        array=array,
        team=membership.team,
        submitted_by=membership.user,
        name=binding["name"],
        app_version=binding["version"],
        queue=binding["queue"],
        project=binding["project"],
        app_options=binding["options"],
        config=config,
        input_path=binding["input_data"]["path"],
        quoted_cost=binding["cost"],
        quoted_costs=binding["costs"],
    )


def _step(job: Job, index: int, plan: StepPlan) -> JobStep:
    """A JobStep row for a planned step."""
    return JobStep(
        job=job,
        team_id=job.team_id,
        index=index,
        step_name=plan.name,
        run_if_previous_step_fails=plan.run_if_previous_step_fails,
        num_tasks=plan.num_tasks,
        tasks_per_node=plan.num_tasks,
        threads_per_task=plan.threads_per_task,
        max_runtime=plan.max_runtime_hours,
        plan={
            "commands": [asdict(command) for command in plan.commands],
            "files": dict(plan.files),
            "remove": list(plan.remove),
            "environment": dict(plan.environment),
        },
    )


def request_cancel(job: Job) -> None:
    """Ask the worker to cancel a job; a finished job stays as it is."""
    if job.finished:
        return
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    transaction.on_commit(wake_worker)
    logger.info("Job %s: cancellation requested", job.pk)


def quote(spec: dict, membership, currency: str) -> dict:
    """Price a job spec on every queue that can run it (or only the one named)."""
    version = find_version(spec["app_code"])
    find_project(spec.get("project"), membership)
    queues = version.queues.select_related("cluster").filter(maintenance_mode=False).order_by("id")
    if spec.get("queue_code"):
        queues = [find_queue(spec["queue_code"], version)]

    tasks = task_specs(spec["tasks"])
    task_quotes, totals, refusals = quote_on_queues(
        version, queues, tasks, membership.team, currency
    )
    return {"task_quotes": task_quotes, "totals": totals, "unavailable": refusals}


@transaction.atomic
def update_pending(job: Job, app_options: dict | None, config: dict | None) -> Job:
    """Change the options or configuration of a job that has not started, re-planning its steps."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.state != JobState.PENDING or job.cancel_requested:
        raise Conflict("Only a job that has not started can be changed.")
    if config is not None:
        job.config = config
    if app_options is not None:
        driver = get_driver(job.app_version.driver)
        tasks = [TaskSpec(**task) for task in job.tasks]
        try:
            job.app_options = driver.validate(app_options, tasks)
        except serializers.ValidationError as error:
            raise serializers.ValidationError({"app_options": error.detail}) from error
        plans = driver.plan_steps(job.app_options, tasks)
        check_fits(plans, job.queue)
        cost, costs = maximum_costs(job.queue, job.app_version, job.team, tasks, plans)
        if cost > job.quoted_cost:
            lock_team_budget(job.team)
            check_budgets(job.team, job.project, cost - job.quoted_cost)
        job.quoted_cost, job.quoted_costs = cost, costs
        if not job.requires_auth and needs_authorisation(job.team, cost):
            job.requires_auth, job.auth_state = True, AuthState.PENDING
        job.steps.all().delete()
        JobStep.objects.bulk_create(_step(job, index, plan) for index, plan in enumerate(plans))
    job.save(
        update_fields=[
            "config",
            "app_options",
            "quoted_cost",
            "quoted_costs",
            "requires_auth",
            "auth_state",
        ]
    )
    logger.info("Job %s: options updated before it started", job.pk)
    return job


def _request_stop(step_id: int) -> None:
    """Ask the worker to stop a step that runs (or is queued in its scheduler)."""
    JobStep.objects.filter(pk=step_id, stop_requested="").update(
        stop_requested="cancel", stop_requested_at=timezone.now()
    )


@transaction.atomic
def cancel_step(step: JobStep) -> None:
    """Cancel one step: a running one is stopped, a waiting one will not run.

    A waiting step is cancelled with its job's row locked (as the worker's moves of the job
    lock it) and its state read again under that lock, so that the job moves on from what
    is true now. A stop request takes no lock: it is written after the commit.
    """
    step = JobStep.objects.select_related("job").get(pk=step.pk)
    if step.state in (StepState.PENDING, StepState.QUEUED):
        lifecycle.lock_job(step.job_id)
        step.refresh_from_db(fields=["state"])
        if step.state in (StepState.PENDING, StepState.QUEUED) and step.move_to(
            StepState.CANCELLED, scheduler_reason=""
        ):
            # No backend will report the end of a step that never ran: the job moves on
            # now, as after any step's end (the next step runs or is skipped, or it ends).
            lifecycle.advance(step.job)
    if step.state in ACTIVE_STEP_STATES:
        transaction.on_commit(partial(_request_stop, step.pk))
    transaction.on_commit(wake_worker)
    logger.info("Job %s: step %s cancellation requested", step.job_id, step.step_name)
