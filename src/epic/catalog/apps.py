"""The catalog: clusters, queues and applications."""

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    """The catalog app."""

    name = "epic.catalog"
    label = "catalog"
