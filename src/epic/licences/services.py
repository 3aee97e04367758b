"""Licence operations for the API, the catalog loader and the worker; values are never logged."""

import logging
import re
from typing import Any

from django.db import transaction
from django.db.models import F, Q, QuerySet

from epic.accounts.models import Membership, Team
from epic.api.permissions import MANAGING_ROLES
from epic.catalog.models import Application
from epic.licences.models import Licence, LicenceTemplate, VarType
from epic.licences.variables import MASK, MAX_VALUE_LENGTH, MAX_VARIABLES, name_problem

logger = logging.getLogger(__name__)

# Shorter values are too likely to occur by chance for redaction to leave a log readable.
MIN_REDACTED_LENGTH = 4
TEMPLATE_KEYS = {"variable_name", "help_text", "var_type", "default"}


class TemplateError(ValueError):
    """A licence template is malformed; the message names the variable and the problem."""


def may_read_values(membership: Membership) -> bool:
    """Whether a member may read licence values: only the team's admins and owners may."""
    return membership.role in MANAGING_ROLES


@transaction.atomic
def create_licence(
    team: Team,
    display_name: str,
    environment: list[dict[str, str]],
    application: Application | None = None,
    description: str | None = None,
) -> Licence:
    """Create a licence of `team`; `environment` is an ordered list of name/value pairs."""
    licence = Licence.objects.create(
        team=team,
        application=application,
        display_name=display_name,
        description=description,
        environment=[
            {"variable_name": item["variable_name"], "value": item["value"]}
            for item in environment
        ],
    )
    names = [item["variable_name"] for item in environment]
    logger.info("Team %s added licence %s setting %s", team.pk, licence.pk, names)
    return licence


def delete_licence(licence: Licence) -> None:
    """Delete a licence; jobs started later no longer get its variables."""
    logger.info("Team %s deleted licence %s", licence.team_id, licence.pk)
    licence.delete()


def licences_for(team: Team, application: Application | int | None) -> QuerySet[Licence]:
    """The team's licences that apply to jobs of `application`, in the order they apply.

    Team-wide licences (no application) come first, then the application's own; each group
    in the order the licences were created.
    """
    application_id = getattr(application, "pk", application)
    return (
        Licence.objects.filter(team=team)
        .filter(Q(application__isnull=True) | Q(application_id=application_id))
        .order_by(F("application_id").asc(nulls_first=True), "created", "id")
    )


def environment_for(team: Team, application: Application | int | None) -> dict[str, str]:
    """The variables a job of `team` running `application` gets from the team's licences.

    Only active licences count. On a clash the licence applied last wins: an application's
    own licence over a team-wide one, and a later licence over an earlier one.
    Limitation: a member allowed to run the application can read these values from inside
    a job; masking protects only what the API and the log tails show.
    """
    environment: dict[str, str] = {}
    for licence in licences_for(team, application).filter(active=True):
        environment.update(licence.variables)
    return environment


def redact(text: str, team: Team, application: Application | int | None) -> str:
    """Replace every value of the licences `environment_for` reads with a mask.

    Inactive licences count too, since a job may have started while they were active.
    Values shorter than four characters are left, as they would mask ordinary text.
    Limitation: values of licences deleted since the job ran are no longer known.
    """
    if not text:
        return text
    values = {
        value
        for licence in licences_for(team, application)
        for value in licence.variables.values()
        if len(value) >= MIN_REDACTED_LENGTH
    }
    if not values:
        return text

    # Longest first, so a value that contains another is masked whole.
    ordered = sorted(values, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(value) for value in ordered))
    return pattern.sub(MASK, text)


@transaction.atomic
def set_template(application: Application, variables: list[dict[str, Any]]) -> LicenceTemplate:
    """Declare the variables `application`'s licences expect, replacing any earlier list.

    Each variable is a mapping with `variable_name` and `help_text`, and optionally
    `var_type` (string, integer or server; string by default) and `default`.
    Raises TemplateError naming the first bad variable.
    """
    if not isinstance(variables, list):
        raise TemplateError(f"{application}: the licence template must be a list.")
    if len(variables) > MAX_VARIABLES:
        raise TemplateError(f"{application}: at most {MAX_VARIABLES} licence variables.")

    checked = [
        _template_variable(entry, f"{application} variable {n}")
        for n, entry in enumerate(variables, start=1)
    ]
    names = [entry["variable_name"] for entry in checked]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TemplateError(f"{application}: licence variables named twice: {duplicates}.")

    template, _ = LicenceTemplate.objects.update_or_create(
        application=application, defaults={"variables": checked}
    )
    logger.info("Licence template of %s now expects %s", application, names)
    return template


def _template_variable(entry: Any, where: str) -> dict[str, str | None]:
    """Check one template variable and return it with every key present."""
    if not isinstance(entry, dict):
        raise TemplateError(f"{where}: must be a mapping.")
    unknown = sorted(set(entry) - TEMPLATE_KEYS)
    if unknown:
        raise TemplateError(f"{where}: unknown keys {unknown}.")

    name = _template_text(entry, "variable_name", where, required=True)
    problem = name_problem(name)
    if problem:
        raise TemplateError(f"{where}: {problem}")
    var_type = entry.get("var_type", VarType.STRING)
    if var_type not in VarType.values:
        raise TemplateError(f"{where}: var_type must be one of {VarType.values}.")

    return {
        "variable_name": name,
        "help_text": _template_text(entry, "help_text", where, required=True),
        "var_type": str(var_type),
        "default": _template_text(entry, "default", where, required=False),
    }


def _template_text(entry: dict, key: str, where: str, required: bool) -> str | None:
    """A text of a template variable: 1 to 300 characters without NUL, or None if optional."""
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise TemplateError(f"{where}: `{key}` must be non-empty text.")
    if len(value) > MAX_VALUE_LENGTH:
        raise TemplateError(f"{where}: `{key}` is longer than {MAX_VALUE_LENGTH} characters.")
    return value
