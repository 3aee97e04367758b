"""Catalog endpoints: applications and cluster queues."""

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import api_view
from rest_framework.response import Response

from epic.catalog.models import Application, ApplicationVersion, DesktopNodeType, Queue
from epic.catalog.serializers import (
    ApplicationConfigurationSerializer,
    ApplicationDetailSerializer,
    ApplicationListSerializer,
    DesktopNodeTypeSerializer,
    QueueSerializer,
)


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("product_name", str)]),
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


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("cluster_name", str),
            OpenApiParameter("queue_name", str),
            OpenApiParameter("allowed_apps", str, description="An app_code the queue runs."),
        ]
    ),
)
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


class DesktopNodeTypeViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The kinds of machine browser desktops run on."""

    serializer_class = DesktopNodeTypeSerializer
    queryset = DesktopNodeType.objects.order_by("id")
    lookup_field = "node_code"
    lookup_value_regex = "[^/]+"


@extend_schema(operation_id="config_read", responses=ApplicationConfigurationSerializer)
@api_view(["GET"])
def application_configuration(request, app_code: str, queue_code: str):
    """The scripts and environment an application version runs with on a queue."""
    version = get_object_or_404(
        ApplicationVersion, app_code=app_code, queues__queue_code=queue_code
    )
    return Response(ApplicationConfigurationSerializer(version).data)
