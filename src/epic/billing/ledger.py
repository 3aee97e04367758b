"""Charging job steps for what they used, and reading what a team or project has spent."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from epic.billing.models import SpendEntry

logger = logging.getLogger(__name__)

SECONDS_PER_HOUR = Decimal(3600)


def month_of(moment) -> date:
    """The first day of the month a moment falls in."""
    return moment.date().replace(day=1)


def step_cost(step) -> Decimal:
    """What a step has used so far, in the base currency: its reservation for its wall clock."""
    from epic.billing.pricing import Reservation, price
    from epic.billing.services import rates_for

    if step.start is None:
        return Decimal(0)
    seconds = Decimal(int(((step.end or timezone.now()) - step.start).total_seconds()))
    job = step.job
    rates = rates_for(job.queue, job.app_version, job.team)
    reservation = Reservation(nodes=step.node_count, cores=step.cores)
    return price(rates, step.step_name, reservation, seconds / SECONDS_PER_HOUR).total


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


def month_spend(team=None, project=None, month: date | None = None) -> Decimal:
    """What a team or a project has been charged in a month (this month by default)."""
    entries = SpendEntry.objects.filter(month=month or month_of(timezone.now()))
    if team is not None:
        entries = entries.filter(team=team)
    if project is not None:
        entries = entries.filter(project=project)
    return entries.aggregate(total=Sum("amount"))["total"] or Decimal(0)


def job_spend(job) -> Decimal:
    """What a job's steps have been charged."""
    return SpendEntry.objects.filter(step__job=job).aggregate(total=Sum("amount"))[
        "total"
    ] or Decimal(0)
