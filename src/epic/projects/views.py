"""Project endpoints."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.response import Response

from epic.accounts.services import current_membership
from epic.api.permissions import require_manager
from epic.projects.models import Project
from epic.projects.serializers import (
    ProjectDetailSerializer,
    ProjectSerializer,
    ProjectUpdateSerializer,
)


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("name", str, description="Id contains.")]),
    partial_update=extend_schema(request=ProjectUpdateSerializer, responses=ProjectSerializer),
)
class ProjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The projects of the caller's current team."""

    queryset = Project.objects.none()

    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        """The team's projects, filtered by name."""
        team = current_membership(self.request).team
        projects = (
            Project.objects.filter(team=team)
            .prefetch_related("authorized_users__profile")
            .order_by("id")
        )
        name = self.request.query_params.get("name")
        if name:
            projects = projects.filter(project_id__icontains=name)
        return projects

    def get_serializer_class(self):
        """Reads show every field; lists the summary."""
        return ProjectDetailSerializer if self.action == "retrieve" else ProjectSerializer

    def partial_update(self, request, pk=None):
        """Change the description or open/close the project (team admins and owners)."""
        project = self.get_object()
        require_manager(current_membership(request))
        update = ProjectUpdateSerializer(project, data=request.data, partial=True)
        update.is_valid(raise_exception=True)
        update.save()
        return Response(ProjectSerializer(project).data)
