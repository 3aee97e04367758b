"""Jobs: arrays, jobs, steps, log refreshes and residuals."""

from django.apps import AppConfig


class JobsConfig(AppConfig):
    """The jobs app."""

    name = "epic.jobs"
    label = "jobs"
