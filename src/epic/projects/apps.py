"""Projects: the billing codes jobs are charged to."""

from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    """The projects app."""

    name = "epic.projects"
    label = "projects"
