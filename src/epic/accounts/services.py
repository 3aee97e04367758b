"""Account operations shared by the API and the `epic admin` commands."""

import logging
import re

from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework import exceptions

from epic.accounts.models import ApiToken, Membership, Profile, Role, Team

logger = logging.getLogger(__name__)

TEAM_HEADER = "HTTP_X_EPIC_TEAM"
# The user's side of the profile relation, which knows whether a user's profile was read.
PROFILE_OF_USER = Profile.user.field.remote_field


@transaction.atomic
def create_user(username: str, team_name: str, role: str = Role.USER, email: str = ""):
    """Create a user in a team (creating the team if new) and make it their default team."""
    team, _ = Team.objects.get_or_create(name=team_name)
    user = get_user_model().objects.create_user(username=username, email=email)
    Membership.objects.create(user=user, team=team, role=role)
    Profile.objects.create(user=user, default_team=team)
    logger.info("Created user %s in team %s as %s", username, team_name, role)
    return user


@transaction.atomic
def join_team(username: str, team_name: str, role: str | None = None) -> Membership:
    """Make an existing user a member of a team (creating the team if new).

    A new member gets `role` (user if none is given); a member already gets `role` if one is
    given and keeps theirs otherwise. Their default team does not change.
    """
    user = get_user_model().objects.get(username=username)
    team, _ = Team.objects.get_or_create(name=team_name)
    membership, created = Membership.objects.get_or_create(
        user=user, team=team, defaults={"role": role or Role.USER}
    )
    if role and not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    logger.info("%s is a member of team %s as %s", username, team_name, membership.role)
    return membership


def issue_token(username: str, name: str = "") -> str:
    """Issue a new API token for a user and return its plain text."""
    user = get_user_model().objects.get(username=username)
    _, plain = ApiToken.objects.issue(user, name=name)
    logger.info("Issued an API token for %s", username)
    return plain


def profile_of(user) -> Profile:
    """Return the user's profile, creating it for users made outside `create_user`.

    A profile read along with the user (as authentication does) is used without a query.
    """
    profile = PROFILE_OF_USER.get_cached_value(user, default=None)
    if profile is not None:
        return profile
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


def current_membership(request) -> Membership:
    """Return the membership a request acts in: the X-EPIC-Team header, else the default team.

    A header naming a team the user is not in is refused as if the team did not exist.
    """
    memberships = Membership.objects.select_related("team").filter(user=request.user)
    requested = request.META.get(TEAM_HEADER)
    if requested:
        chosen = memberships.filter(team_id=_team_id(requested)).first()
        if chosen is None:
            raise exceptions.NotFound("No such team.")
        return chosen

    default_team_id = profile_of(request.user).default_team_id
    chosen = memberships.filter(team_id=default_team_id).first() or memberships.first()
    if chosen is None:
        raise exceptions.PermissionDenied("You are not a member of any team.")
    return chosen


def _team_id(value: str) -> int:
    """Parse the team header, refusing anything but a positive integer."""
    if not re.fullmatch(r"[1-9][0-9]{0,17}", value):
        raise exceptions.ValidationError({"X-EPIC-Team": ["A team id is a positive integer."]})
    return int(value)
