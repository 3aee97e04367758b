"""Billing limits and job authorisation endpoints."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.decorators import api_view
from rest_framework.response import Response

from epic.accounts.models import Membership, Team
from epic.accounts.services import current_membership, profile_of
from epic.api.permissions import MANAGING_ROLES
from epic.billing.authorisation import decide, permissions_text
from epic.billing.models import TeamBilling
from epic.billing.pricing import money_text
from epic.billing.serializers import (
    JobAuthDecisionSerializer,
    JobAuthStatusSerializer,
    LimitsSerializer,
    LimitsUpdateSerializer,
)
from epic.billing.services import (
    display_money,
    exchange_factor,
    in_base_currency,
    in_currency,
)
from epic.jobs.models import Job
from epic.jobs.states import FINAL_JOB_STATES, AuthState

# pyepic's client (epiccore) refuses some texts of these answers over 30 characters.
EPICCORE_TEXT_LENGTH = 30


def _profile_teams(membership: Membership) -> list[TeamBilling]:
    """The billing settings of the teams that share the caller's team's billing profile."""
    billing = TeamBilling.of(membership.team)
    return list(
        TeamBilling.objects.filter(profile=billing.profile)
        .select_related("team", "profile")
        .order_by("team_id")
    )


def _limit(billing: TeamBilling, user, currency: str) -> dict:
    """One team's limit, budget and authorisation rule as the API shows them."""
    role = Membership.objects.filter(team=billing.team, user=user).values_list("role", flat=True)
    members = Membership.objects.filter(team=billing.team).count()
    threshold = display_money(billing.jobauth_cost_threshold, currency)
    return {
        "id": billing.team_id,
        "team": {
            "id": billing.team_id,
            "name": billing.team.name,
            "number_of_members": members,
            "user_role": role.first() or "",
        },
        "budget": {"monthly_limit": display_money(billing.monthly_limit or Decimal(0), currency)},
        "project": None,
        "jobauth": {
            "enabled": billing.jobauth_enabled,
            "all_jobs": billing.jobauth_all_jobs,
            "cost_threshold": threshold,
            "description_str": _jobauth_text(billing, currency),
        },
    }


def _jobauth_text(billing: TeamBilling, currency: str) -> str:
    """The team's authorisation rule in words, short enough for epiccore."""
    if not billing.jobauth_enabled:
        return "Jobs need no authorisation."
    if billing.jobauth_all_jobs:
        return "Every job needs authorisation."
    threshold = money_text(in_currency(billing.jobauth_cost_threshold, currency), currency)
    return _fitted(f"Authorise jobs over {threshold}", f"Jobs over {threshold}")


def _fitted(text: str, shorter: str | None = None) -> str:
    """A text for a field epiccore caps: as it is if it fits, else the shorter one, cut to fit."""
    if len(text) <= EPICCORE_TEXT_LENGTH:
        return text
    return (shorter or text)[:EPICCORE_TEXT_LENGTH]


def _limits_answer(membership: Membership) -> dict:
    """Every limit of the caller's billing profile, the profile's maximum and their total."""
    currency = profile_of(membership.user).display_currency
    teams = _profile_teams(membership)
    profile = teams[0].profile
    total = sum((billing.monthly_limit or Decimal(0) for billing in teams), Decimal(0))
    max_limit = display_money(profile.max_limit or Decimal(0), currency)
    total_money = display_money(total, currency)
    return {
        "limits": [_limit(billing, membership.user, currency) for billing in teams],
        "max_limit": {"amount": max_limit["amount"], "currency": currency},
        "max_limit_str": money_text(Decimal(max_limit["amount"]), currency),
        "total": {"amount": total_money["amount"], "currency": currency},
        "total_str": money_text(Decimal(total_money["amount"]), currency),
    }


@extend_schema(methods=["GET"], operation_id="billing_limits_list", responses=LimitsSerializer)
@extend_schema(
    methods=["PATCH"],
    operation_id="billing_limits_partial_update",
    request=LimitsUpdateSerializer,
    responses=LimitsSerializer,
)
@api_view(["GET", "PATCH"])
def billing_limits(request):
    """The limits of the teams of the caller's billing profile; PATCH changes them."""
    membership = current_membership(request)
    if request.method == "PATCH":
        update = LimitsUpdateSerializer(data=request.data)
        update.is_valid(raise_exception=True)
        _apply_limits(membership, update.validated_data["limits"])
    return Response(_limits_answer(membership))


@transaction.atomic
def _apply_limits(membership: Membership, changes: list[dict]) -> None:
    """Apply limit changes; refuse them all if one is not allowed or raises the sum over the max.

    The profile's team rows are locked while they change, so concurrent updates cannot undo
    each other, and only the teams named are written.
    """
    currency = profile_of(membership.user).display_currency
    profile_id = TeamBilling.of(membership.team).profile_id
    locked = TeamBilling.objects.select_for_update().filter(profile_id=profile_id)
    teams = {billing.team_id: billing for billing in locked.select_related("team", "profile")}
    before = _total(teams.values())
    changed = set()
    for index, change in enumerate(changes):
        billing = teams.get(change["id"])
        if billing is None:
            raise serializers.ValidationError({"limits": {index: {"id": ["No such team."]}}})
        _check_manager(billing.team, membership.user)
        _apply_change(billing, change, currency)
        changed.add(billing.team_id)

    profile, total = next(iter(teams.values())).profile, _total(teams.values())
    # A total already over a lowered maximum may still come down, or stay while rules change.
    if profile.max_limit is not None and total > profile.max_limit and total > before:
        shown_total = money_text(in_currency(total, currency), currency)
        shown_max = money_text(in_currency(profile.max_limit, currency), currency)
        raise serializers.ValidationError(
            {"limits": [f"The limits add up to {shown_total}, over the maximum {shown_max}."]}
        )
    for team_id in changed:
        teams[team_id].save()


def _total(teams) -> Decimal:
    """The sum of the teams' monthly limits."""
    return sum((billing.monthly_limit or Decimal(0) for billing in teams), Decimal(0))


def _check_manager(team: Team, user) -> None:
    """Only a team's admins and owners change its limits."""
    role = Membership.objects.filter(team=team, user=user).values_list("role", flat=True).first()
    if role not in MANAGING_ROLES:
        raise exceptions.PermissionDenied("Only the team's admins and owners change its limits.")


def _apply_change(billing: TeamBilling, change: dict, currency: str) -> None:
    """Set a team's monthly limit and authorisation rule from one change."""
    if "budget" in change:
        billing.monthly_limit = in_base_currency(
            change["budget"]["monthly_limit"]["amount"], currency
        )
    jobauth = change.get("jobauth", {})
    if "enabled" in jobauth:
        billing.jobauth_enabled = jobauth["enabled"]
    if "all_jobs" in jobauth:
        billing.jobauth_all_jobs = jobauth["all_jobs"]
    if "cost_threshold" in jobauth:
        billing.jobauth_cost_threshold = in_base_currency(
            jobauth["cost_threshold"]["amount"], currency
        )


def auth_status(job: Job, membership: Membership, currency: str, factor=None) -> dict:
    """A job's authorisation status as the API shows it."""
    return {
        "required": job.requires_auth,
        "state": job.auth_state or AuthState.AUTHORISED,
        "job": {
            "id": job.pk,
            "name": job.name,
            "app": _fitted(job.app_version.application.product_name),
            "cost": money_text(in_currency(job.quoted_cost, currency, factor), currency),
            "submitted_by": job.submitted_by.username,
            # As every other time the API shows: DRF's form, Z for UTC.
            "submitted_at": serializers.DateTimeField().to_representation(job.created),
        },
        "user_profile": {"display_name": _fitted(_display_name(job.submitted_by))},
        "permissions": permissions_text(job, membership),
    }


def _display_name(user) -> str:
    """A user's full name, or their username without one."""
    return user.get_full_name() or user.username


@extend_schema_view(list=extend_schema(operation_id="jobauth_list"))
class JobAuthViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Jobs of the caller's team that need authorisation, and the decisions on them."""

    serializer_class = JobAuthStatusSerializer
    lookup_url_kwarg = "job"
    queryset = Job.objects.none()
    http_method_names = ["get", "put", "head", "options"]

    def get_queryset(self):
        """The current team's jobs that need authorisation, newest first."""
        if getattr(self, "swagger_fake_view", False):
            return Job.objects.none()
        team = current_membership(self.request).team
        return (
            Job.objects.filter(team=team, requires_auth=True)
            .select_related("app_version__application", "submitted_by")
            .order_by("-id")
        )

    def list(self, request):
        """The jobs waiting for a decision the caller may take."""
        membership = current_membership(request)
        waiting = self.get_queryset().filter(auth_state=AuthState.PENDING)
        waiting = waiting.exclude(state__in=FINAL_JOB_STATES)
        page = self.paginate_queryset(waiting)
        currency = profile_of(request.user).display_currency
        factor = exchange_factor(currency)
        rows = [auth_status(job, membership, currency, factor) for job in page]
        return self.get_paginated_response(rows)

    def retrieve(self, request, job=None):
        """One job's authorisation status."""
        membership = current_membership(request)
        currency = profile_of(request.user).display_currency
        return Response(auth_status(self.get_object(), membership, currency))

    @extend_schema(request=JobAuthDecisionSerializer, responses=JobAuthStatusSerializer)
    def update(self, request, job=None):
        """Authorise or reject a job (team admins and owners)."""
        decision = JobAuthDecisionSerializer(data=request.data)
        decision.is_valid(raise_exception=True)
        membership = current_membership(request)
        decided = decide(self.get_object(), membership, decision.validated_data["state"])
        currency = profile_of(request.user).display_currency
        return Response(auth_status(decided, membership, currency))
