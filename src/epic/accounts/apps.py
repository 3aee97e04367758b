"""Users, teams, roles, API tokens and profile settings."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """The accounts app."""

    name = "epic.accounts"
    label = "accounts"
