"""Serializers for billing limits and job authorisation."""

from decimal import Decimal

from rest_framework import serializers

from epic.api.fields import StrictBooleanField
from epic.jobs.states import AuthState


class AmountSerializer(serializers.Serializer):
    """A money amount sent by a client; only the amount counts, in its display currency."""

    amount = serializers.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal(0), max_value=Decimal(10**11)
    )
    currency = serializers.CharField(required=False)
    currency_symbol = serializers.CharField(required=False)


class BudgetUpdateSerializer(serializers.Serializer):
    """A team's monthly limit."""

    monthly_limit = AmountSerializer()


class JobAuthUpdateSerializer(serializers.Serializer):
    """A team's job authorisation rule."""

    enabled = StrictBooleanField(required=False)
    all_jobs = StrictBooleanField(required=False)
    cost_threshold = AmountSerializer(required=False)


class LimitUpdateSerializer(serializers.Serializer):
    """The changes to one team's limit; `id` is the team's id."""

    id = serializers.IntegerField(min_value=1)
    budget = BudgetUpdateSerializer(required=False)
    jobauth = JobAuthUpdateSerializer(required=False)
    team = serializers.DictField(required=False)
    project = serializers.DictField(required=False)


class LimitsUpdateSerializer(serializers.Serializer):
    """An update of the limits of the teams of a billing profile."""

    limits = LimitUpdateSerializer(many=True, max_length=1000)


class JobAuthDecisionSerializer(serializers.Serializer):
    """A decision on a job waiting for authorisation."""

    state = serializers.ChoiceField(choices=[AuthState.AUTHORISED, AuthState.REJECTED])
    job = serializers.DictField(required=False)
    user_profile = serializers.DictField(required=False)


class MoneyOutSerializer(serializers.Serializer):
    """A money amount as the API shows it."""

    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    currency = serializers.CharField()
    currency_symbol = serializers.CharField(required=False)


class LimitTeamSerializer(serializers.Serializer):
    """The team a limit belongs to."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    number_of_members = serializers.IntegerField()
    user_role = serializers.CharField(allow_blank=True)


class BudgetSerializer(serializers.Serializer):
    """A team's monthly limit."""

    monthly_limit = MoneyOutSerializer()


class JobAuthRuleSerializer(serializers.Serializer):
    """A team's job authorisation rule."""

    enabled = serializers.BooleanField()
    all_jobs = serializers.BooleanField()
    cost_threshold = MoneyOutSerializer()
    description_str = serializers.CharField()


class LimitSerializer(serializers.Serializer):
    """One team's limit."""

    id = serializers.IntegerField()
    team = LimitTeamSerializer()
    budget = BudgetSerializer()
    project = serializers.DictField(allow_null=True)
    jobauth = JobAuthRuleSerializer()


class LimitsSerializer(serializers.Serializer):
    """The limits of a billing profile's teams, its maximum and their total."""

    limits = LimitSerializer(many=True)
    max_limit = MoneyOutSerializer()
    max_limit_str = serializers.CharField()
    total = MoneyOutSerializer()
    total_str = serializers.CharField()


class JobSummarySerializer(serializers.Serializer):
    """The job an authorisation is about."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    app = serializers.CharField()
    cost = serializers.CharField()
    submitted_by = serializers.CharField()
    submitted_at = serializers.CharField()


class UserNameSerializer(serializers.Serializer):
    """Who submitted the job."""

    display_name = serializers.CharField()


class JobAuthStatusSerializer(serializers.Serializer):
    """A job's authorisation status."""

    required = serializers.BooleanField()
    state = serializers.ChoiceField(choices=AuthState.values)
    job = JobSummarySerializer()
    user_profile = UserNameSerializer()
    permissions = serializers.CharField()
