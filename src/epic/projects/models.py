"""Projects (billing codes) that belong to a team."""

from django.conf import settings
from django.db import models

from epic.accounts.models import Team


class Project(models.Model):
    """A billing code of a team; a closed project takes no new jobs."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="projects")
    project_id = models.CharField(max_length=100)
    description = models.TextField(blank=True, null=True)
    closed = models.BooleanField(default=False)
    all_users = models.BooleanField(default=True)
    spend_limit = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, help_text="Monthly, in GBP."
    )
    authorized_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "project_id"], name="project_id_per_team")
        ]

    def __str__(self) -> str:
        return self.project_id

    def may_bill(self, user) -> bool:
        """Whether `user` may charge jobs to this project."""
        if self.closed:
            return False
        return self.all_users or self.authorized_users.filter(pk=user.pk).exists()
