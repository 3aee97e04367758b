"""The spend ledger: what each job step has cost its team and project."""

from decimal import Decimal

from django.conf import settings
from django.db import models

from epic.accounts.models import Team
from epic.projects.models import Project


class SpendEntry(models.Model):
    """The charge of one job step, in the base currency.

    There is one entry per step: charging a step again (while it runs, at its end, or after a
    worker restart) recomputes the same amount from its wall clock, so it is charged once.
    """

    step = models.OneToOneField("jobs.JobStep", on_delete=models.CASCADE, related_name="spend")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="spend")
    project = models.ForeignKey(
        Project, null=True, on_delete=models.SET_NULL, related_name="spend"
    )
    month = models.DateField(help_text="First day of the month the step started in.")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    final = models.BooleanField(default=False, help_text="The step has ended: this is the bill.")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["team", "month"]),
            models.Index(fields=["project", "month"]),
        ]


# Limits are sent in a display currency and kept in the base one; a millionth of precision
# lets an amount entered in any display currency read back exactly as it was entered.
LIMIT_DIGITS = 18
LIMIT_PLACES = 6


def default_exchange_rates() -> dict[str, str]:
    """Units of each display currency per unit of the base currency (examples to change)."""
    return {"GBP": "1", "EUR": "1.17", "USD": "1.27"}


class PricingPolicy(models.Model):
    """The installation's base currency, exchange rates and charge rates (one row)."""

    base_currency = models.CharField(max_length=3, default="GBP")
    exchange_rates = models.JSONField(default=default_exchange_rates)
    service_charge_rate = models.DecimalField(
        max_digits=6, decimal_places=4, default=Decimal(0), help_text="Of iaas plus software."
    )
    tax_rate = models.DecimalField(max_digits=6, decimal_places=4, default=Decimal(0))

    @classmethod
    def current(cls) -> "PricingPolicy":
        """The policy in force, created with its defaults on first use."""
        policy, _ = cls.objects.get_or_create(pk=1)
        return policy

    def rate(self, currency: str) -> Decimal:
        """Units of `currency` per unit of the base currency."""
        return Decimal(self.exchange_rates.get(currency, "1"))


class BillingProfile(models.Model):
    """A billing account that one or more teams draw on, with a cap on their monthly limits."""

    name = models.CharField(max_length=100, unique=True)
    max_limit = models.DecimalField(
        max_digits=LIMIT_DIGITS, decimal_places=LIMIT_PLACES, null=True, blank=True
    )


class TeamBilling(models.Model):
    """A team's discount, monthly budget and job authorisation rules."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="billing")
    profile = models.ForeignKey(
        BillingProfile, null=True, on_delete=models.SET_NULL, related_name="teams"
    )
    discount_rate = models.DecimalField(max_digits=6, decimal_places=4, default=Decimal(0))
    monthly_limit = models.DecimalField(
        max_digits=LIMIT_DIGITS, decimal_places=LIMIT_PLACES, null=True, blank=True
    )
    jobauth_enabled = models.BooleanField(default=False)
    jobauth_all_jobs = models.BooleanField(default=False)
    jobauth_cost_threshold = models.DecimalField(
        max_digits=LIMIT_DIGITS, decimal_places=LIMIT_PLACES, default=Decimal(0)
    )

    @classmethod
    def of(cls, team) -> "TeamBilling":
        """The team's billing settings, with their own billing profile on first use."""
        billing = cls.objects.filter(team=team).select_related("profile").first()
        if billing is None:
            profile, _ = BillingProfile.objects.get_or_create(name=f"team-{team.pk}")
            billing, _ = cls.objects.get_or_create(team=team, defaults={"profile": profile})
        return billing


class JobAuthDecision(models.Model):
    """A team admin's decision on a job that needed authorisation: who, what and when."""

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="auth_decisions")
    state = models.CharField(max_length=10)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    decided_at = models.DateTimeField(auto_now_add=True)
