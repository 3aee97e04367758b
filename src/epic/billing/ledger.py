"""Charging job steps for what they used, and reading what a team or project has spent."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from epic.billing.models import SpendEntry
from epic.billing.pricing import Reservation, price, reserve
from epic.software.base import TaskSpec

logger = logging.getLogger(__name__)

SECONDS_PER_HOUR = Decimal(3600)


def month_of(moment) -> date:
    """The first day of the month a moment falls in."""
    return moment.date().replace(day=1)


def step_cost(step) -> Decimal:
    """What a step has used so far, in the base currency: its reservation for its wall clock."""
    from epic.billing.services import rates_for

    if step.start is None:
        return Decimal(0)
    seconds = Decimal(int(((step.end or timezone.now()) - step.start).total_seconds()))
    # Time past the runtime the task was quoted for is not charged: a job costs at most its quote.
    hours = min(seconds / SECONDS_PER_HOUR, Decimal(step.max_runtime))
    job = step.job
    rates = rates_for(job.queue, job.app_version, job.team)
    return price(rates, step.step_name, reservation_of(step), hours).total


def reservation_of(step) -> Reservation:
    """What the step's task reserves on the queue, as quoted; the step's own cores without one."""
    job = step.job
    return planned_reservation(job.queue, job.tasks, step.step_name, step.node_count, step.cores)


def planned_reservation(queue, tasks: list[dict], name: str, nodes: int, cores: int):
    """The reservation of the task named like a step, or the step's own nodes and cores."""
    for task in tasks:
        if task.get("reference") == name:
            reservation = reserve(queue, TaskSpec(**task))
            if isinstance(reservation, Reservation):
                return reservation
    return Reservation(nodes=nodes, cores=cores)


def planned_maximum(rates, tasks: list[dict], name: str, cores: int, hours: int):
    """The most a planned step can be charged: its reservation for its whole runtime."""
    reservation = planned_reservation(rates.queue, tasks, name, 1, cores)
    return price(rates, name, reservation, Decimal(hours))


def charge(step, final: bool = False) -> SpendEntry | None:
    """Record what a step has cost so far; the same step is never charged twice."""
    if step.start is None:
        return None
    job = step.job
    entry, _ = SpendEntry.objects.update_or_create(
        step=step,
        defaults={
            "team_id": job.team_id,
            "project_id": job.project_id,
            "month": month_of(step.start),
            "amount": step_cost(step),
            "final": final,
        },
    )
    logger.debug("Job %s: step %s charged %s", job.pk, step.step_name, entry.amount)
    return entry


def month_spend(team=None, project=None, month: date | None = None, profile=None) -> Decimal:
    """What a team, a project or a billing profile's teams were charged in a month (this one)."""
    entries = SpendEntry.objects.filter(month=month or month_of(timezone.now()))
    entries = entries.filter(**spend_scope(team, project, profile))
    return entries.aggregate(total=Sum("amount"))["total"] or Decimal(0)


def spend_scope(team=None, project=None, profile=None) -> dict:
    """Filters that keep the jobs or spend entries of a team, a project or a billing profile."""
    scope = {"team": team, "project": project, "team__billing__profile": profile}
    return {field: value for field, value in scope.items() if value is not None}


def job_spend(job) -> Decimal:
    """What a job's steps have been charged."""
    return SpendEntry.objects.filter(step__job=job).aggregate(total=Sum("amount"))[
        "total"
    ] or Decimal(0)
