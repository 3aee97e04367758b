"""Data: the S3-compatible store, its short-lived credentials and epic:// paths."""

from django.apps import AppConfig


class DataConfig(AppConfig):
    """The data app."""

    name = "epic.data"
    label = "data"
