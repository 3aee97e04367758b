"""Money rules between the API and the catalog: rates for a team, quotes, budgets, display."""

from __future__ import annotations

import logging
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property

from django.db.models import Sum
from django.utils import timezone
from rest_framework import serializers

from epic.billing.ledger import month_of, month_spend, spend_scope
from epic.billing.models import LIMIT_PLACES, BillingProfile, PricingPolicy, TeamBilling
from epic.billing.pricing import Rates, TaskPrice, add_up, money, price, reserve, to_penny
from epic.catalog.models import ApplicationVersion, Queue
from epic.software.base import TaskSpec

logger = logging.getLogger(__name__)


class TeamPricing:
    """The pricing policy and a team's billing settings, each read once when first needed.

    One lives for one request at most, to price many jobs alike: prices can change between
    requests.
    """

    def __init__(self, team) -> None:
        self.team = team

    @cached_property
    def policy(self) -> PricingPolicy:
        """The policy in force."""
        return PricingPolicy.current()

    @cached_property
    def billing(self) -> TeamBilling:
        """The team's billing settings."""
        return TeamBilling.of(self.team)

    def rates(self, queue: Queue, version, currency: str | None = None) -> Rates:
        """The rates the team pays on a queue, in a display currency (the base one by default)."""
        policy = self.policy
        currency = currency or policy.base_currency
        return Rates(
            queue=queue,
            version=version,
            discount_rate=self.billing.discount_rate,
            service_charge_rate=policy.service_charge_rate,
            tax_rate=policy.tax_rate,
            exchange_rate=policy.rate(currency) / policy.rate(policy.base_currency),
            currency=currency,
        )


def rates_for(queue: Queue, version, team, currency: str | None = None) -> Rates:
    """The rates a team pays on a queue, in a display currency (the base one by default)."""
    return TeamPricing(team).rates(queue, version, currency)


def quote_tasks(rates: Rates, tasks: list[TaskSpec]) -> list[TaskPrice] | str:
    """Each task's maximum price on the rates' queue, or why that queue cannot run one."""
    prices = []
    for task in tasks:
        reservation = reserve(rates.queue, task)
        if isinstance(reservation, str):
            return reservation
        prices.append(price(rates, task.reference, reservation, Decimal(task.runtime)))
    return prices


def quote_on_queues(version: ApplicationVersion, queues, tasks: list[TaskSpec], team, currency):
    """Quotes per task and totals per queue, and the reasons for queues that cannot run it."""
    task_quotes, totals, refusals = [], [], []
    for queue in queues:
        prices = quote_tasks(rates_for(queue, version, team, currency), tasks)
        if isinstance(prices, str):
            refusals.append({"queue_code": queue.queue_code, "reason": prices})
            continue
        task_quotes.extend(prices)
        totals.append(add_up(prices, "total", queue.queue_code, currency))
    return task_quotes, totals, refusals


def exchange_factor(currency: str) -> Decimal:
    """Units of a display currency per unit of the base currency."""
    policy = PricingPolicy.current()
    return policy.rate(currency) / policy.rate(policy.base_currency)


def in_currency(amount: Decimal, currency: str, factor: Decimal | None = None) -> Decimal:
    """A base-currency amount in a display currency, rounded by the one rule.

    Pass `factor` (from exchange_factor) when converting many amounts, to read the rates once.
    """
    factor = exchange_factor(currency) if factor is None else factor
    return to_penny(amount * factor)


def in_base_currency(amount: Decimal, currency: str) -> Decimal:
    """A display-currency amount (a limit a client sent) in the base currency, to a millionth."""
    exact = amount / exchange_factor(currency)
    return exact.quantize(Decimal(1).scaleb(-LIMIT_PLACES), rounding=ROUND_HALF_UP)


def reader_currency(serializer_context: dict) -> str:
    """The display currency of the user a serializer answers (the base currency without one)."""
    from epic.accounts.services import profile_of

    request = serializer_context.get("request")
    if request is None or not request.user.is_authenticated:
        return PricingPolicy.current().base_currency
    return profile_of(request.user).display_currency


def display_money(amount: Decimal, currency: str) -> dict:
    """A base-currency amount as a money object in a display currency."""
    return money(in_currency(amount, currency), currency)


def committed_spend(team=None, project=None, profile=None) -> Decimal:
    """This month's charges plus the quoted maximum of the jobs that have not finished."""
    from epic.jobs.models import Job
    from epic.jobs.states import FINAL_JOB_STATES

    scope = spend_scope(team, project, profile)
    unfinished = Job.objects.exclude(state__in=FINAL_JOB_STATES).filter(**scope)
    open_quotes = unfinished.aggregate(total=Sum("quoted_cost"))["total"] or Decimal(0)
    charged_open = _charged_so_far(unfinished)
    charged = month_spend(team, project, month_of(timezone.now()), profile)
    return charged + open_quotes - charged_open


def _charged_so_far(jobs) -> Decimal:
    """What unfinished jobs have already been charged (already counted in month_spend)."""
    from epic.billing.models import SpendEntry

    total = SpendEntry.objects.filter(step__job__in=jobs).aggregate(total=Sum("amount"))
    return total["total"] or Decimal(0)


def check_budgets(team, project, new_cost: Decimal) -> None:
    """Refuse a submission that would take the month over a team, profile or project limit."""
    billing = TeamBilling.of(team)
    if billing.monthly_limit is not None:
        committed = committed_spend(team=team)
        if committed + new_cost > billing.monthly_limit:
            raise serializers.ValidationError(
                {"budget": [_over(new_cost, committed, billing.monthly_limit, "team's monthly")]}
            )
    if billing.profile is not None and billing.profile.max_limit is not None:
        _check_profile(billing.profile, new_cost)
    if project is not None and project.spend_limit is not None:
        committed = committed_spend(project=project)
        if committed + new_cost > project.spend_limit:
            raise serializers.ValidationError(
                {"budget": [_over(new_cost, committed, project.spend_limit, "project's")]}
            )


def _check_profile(profile: BillingProfile, new_cost: Decimal) -> None:
    """Refuse a submission that would take the profile's teams together over its maximum."""
    # Submissions of the profile's other teams wait here, so that together they cannot overrun.
    list(BillingProfile.objects.select_for_update().filter(pk=profile.pk))
    committed = committed_spend(profile=profile)
    if committed + new_cost > profile.max_limit:
        raise serializers.ValidationError(
            {"budget": [_over(new_cost, committed, profile.max_limit, "billing profile's")]}
        )


def _over(cost: Decimal, committed: Decimal, limit: Decimal, which: str) -> str:
    """The reason a submission is over a limit, without revealing what others have spent."""
    currency = PricingPolicy.current().base_currency
    return (
        f"This submission's maximum cost {to_penny(cost)} ({currency}) would take this month's "
        f"committed spend over the {which} limit."
    )


def needs_authorisation(team, cost: Decimal, billing: TeamBilling | None = None) -> bool:
    """Whether a job of this cost must wait for a team admin's decision.

    Pass `billing` (the team's, read in the same transaction) when deciding for many jobs.
    """
    billing = TeamBilling.of(team) if billing is None else billing
    if not billing.jobauth_enabled:
        return False
    return billing.jobauth_all_jobs or cost > billing.jobauth_cost_threshold
