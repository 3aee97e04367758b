"""Licences: secrets a team holds for an application, injected into its jobs."""

from django.apps import AppConfig


class LicencesConfig(AppConfig):
    """The licences app."""

    name = "epic.licences"
    label = "licences"
