"""Licences a team holds for applications, and the variables each application expects."""

import uuid

from django.db import models

from epic.accounts.models import Team
from epic.catalog.models import Application

# Template ids are derived from the application, so they stay the same across reloads.
TEMPLATE_NAMESPACE = uuid.UUID("6f1b7c1e-2f4a-4d59-9a57-3c0b1f4e8a21")


class Licence(models.Model):
    """A team's licence: environment variables injected into its jobs of one application.

    Limitation: values are stored in plain text in the database; only the API hides them.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="licences")
    application = models.ForeignKey(
        Application,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="licences",
        help_text="Null: the licence applies to every application the team runs.",
    )
    active = models.BooleanField(default=True)
    display_name = models.CharField(max_length=30)
    description = models.TextField(null=True, blank=True)
    environment = models.JSONField(
        default=list, help_text="Ordered list of {variable_name, value} objects."
    )
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.display_name

    @property
    def variables(self) -> dict[str, str]:
        """The licence's variables as a name-to-value mapping."""
        return {item["variable_name"]: item["value"] for item in self.environment}


class VarType(models.TextChoices):
    """What kind of value a template variable expects, as a hint for whoever fills it in."""

    STRING = "string", "Any text"
    INTEGER = "integer", "A whole number"
    SERVER = "server", "A licence server, such as 27000@licences.example.org"


class LicenceTemplate(models.Model):
    """The variables an application's licences are expected to set; catalog data."""

    application = models.OneToOneField(
        Application, on_delete=models.CASCADE, primary_key=True, related_name="licence_template"
    )
    variables = models.JSONField(
        default=list,
        help_text="Ordered list of {variable_name, help_text, var_type, default} objects.",
    )

    def __str__(self) -> str:
        return f"Licence template of {self.application}"


def template_id(application_id: int) -> uuid.UUID:
    """The stable id under which an application's licence template is listed."""
    return uuid.uuid5(TEMPLATE_NAMESPACE, f"application:{application_id}")
