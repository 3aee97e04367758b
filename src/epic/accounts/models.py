"""Teams, memberships, profiles and hashed API tokens."""

import hashlib
import secrets

from django.conf import settings
from django.db import models

TOKEN_PREFIX = "epic_"  # noqa: S105 - a visible prefix, not a secret


class Role(models.TextChoices):
    """A member's role in a team, from least to most powerful."""

    USER = "user", "User"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"


class Currency(models.TextChoices):
    """Display currencies that money fields follow."""

    GBP = "GBP", "£"
    EUR = "EUR", "€"
    USD = "USD", "$"


class Team(models.Model):
    """A group of users that owns jobs, data, projects and budgets."""

    name = models.CharField(max_length=100, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's place and role in one team."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.USER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="one_role_per_team")]


class Profile(models.Model):
    """A user's settings: display currency and the team requests act in by default."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    display_currency = models.CharField(
        max_length=3, choices=Currency.choices, default=Currency.GBP
    )
    default_team = models.ForeignKey(Team, null=True, on_delete=models.SET_NULL, related_name="+")

    @property
    def display_currency_symbol(self) -> str:
        """The symbol of the display currency."""
        return Currency(self.display_currency).label


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    """Queries over API tokens."""

    def issue(self, user, name: str = "") -> tuple["ApiToken", str]:
        """Create a token for `user` and return it with its only plain-text copy."""
        plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = self.create(user=user, name=name, key_hash=hash_token(plain))
        return token, plain


class ApiToken(models.Model):
    """An API token; only its hash is stored, so a database leak reveals no token."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True)

    objects = ApiTokenQuerySet.as_manager()
