"""The spend ledger: what each job step has cost its team and project."""

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
