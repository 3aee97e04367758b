"""Catalog endpoints: applications and cluster queues."""

from django.db.models import Prefetch
from rest_framework import mixins, viewsets

from epic.catalog.models import Application, ApplicationVersion, Queue
from epic.catalog.serializers import (
    ApplicationDetailSerializer,
    ApplicationListSerializer,
    QueueSerializer,
)


class ApplicationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Applications and their versions; read by product name."""

    lookup_field = "product_name"
    lookup_url_kwarg = "application"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        """Applications with their versions and queues, filtered by product_name."""
        versions = ApplicationVersion.objects.prefetch_related("queues").order_by("app_code")
        applications = Application.objects.prefetch_related(
            Prefetch("versions", queryset=versions)
        ).order_by("id")
        name = self.request.query_params.get("product_name")
        if name:
            applications = applications.filter(product_name__icontains=name)
        return applications

    def get_serializer_class(self):
        """Reads name the version list `version`, as the API does."""
        if self.action == "retrieve":
            return ApplicationDetailSerializer
        return ApplicationListSerializer


class QueueViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Cluster queues; read by queue code."""

    serializer_class = QueueSerializer
    lookup_field = "queue_code"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        """Queues filtered by cluster_name, queue_name and allowed_apps."""
        queues = Queue.objects.select_related("cluster").order_by("id")
        params = self.request.query_params
        if params.get("cluster_name"):
            queues = queues.filter(cluster__name__icontains=params["cluster_name"])
        if params.get("queue_name"):
            queues = queues.filter(name__icontains=params["queue_name"])
        if params.get("allowed_apps"):
            queues = queues.filter(
                application_versions__app_code=params["allowed_apps"]
            ).distinct()
        return queues
