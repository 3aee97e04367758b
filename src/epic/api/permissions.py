"""Role checks shared by the apps: what a team's users, admins and owners may do."""

from rest_framework import exceptions

from epic.accounts.models import Membership, Role

MANAGING_ROLES = {Role.ADMIN, Role.OWNER}


def require_manager(membership: Membership) -> None:
    """Refuse with 403 unless the member is an admin or owner of their team."""
    if membership.role not in MANAGING_ROLES:
        raise exceptions.PermissionDenied("Only the team's admins and owners may do this.")
