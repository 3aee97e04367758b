"""Licence endpoints: team licences and the licence templates of catalog applications."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from epic.accounts.services import current_membership
from epic.api.permissions import require_manager
from epic.catalog.models import Application
from epic.licences.models import Licence
from epic.licences.serializers import (
    LicenceSerializer,
    LicenceTemplateSerializer,
    WritableLicenceSerializer,
)
from epic.licences.services import create_licence, delete_licence, may_read_values

UUID_PATTERN = "[0-9a-fA-F-]{32,36}"


class LicenceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The licences of the caller's current team; values are shown to admins and owners only."""

    serializer_class = LicenceSerializer
    lookup_value_regex = UUID_PATTERN
    http_method_names = ["get", "post", "delete", "head", "options"]

    def membership(self):
        """The caller's membership in the team this request acts in, read once per request."""
        if not hasattr(self, "_membership"):
            self._membership = current_membership(self.request)
        return self._membership

    def get_queryset(self):
        """The team's licences, oldest first."""
        team = self.membership().team
        return (
            Licence.objects.filter(team=team)
            .select_related("application")
            .order_by("created", "id")
        )

    def get_serializer_context(self):
        """Reveal values only to the team's admins and owners."""
        context = super().get_serializer_context()
        context["reveal"] = may_read_values(self.membership())
        return context

    def create(self, request):
        """Add a licence to the team (team admins and owners)."""
        membership = self.membership()
        require_manager(membership)
        writable = WritableLicenceSerializer(data=request.data)
        writable.is_valid(raise_exception=True)

        licence = create_licence(membership.team, **writable.validated_data)
        body = WritableLicenceSerializer(licence).data
        return Response(body, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk=None):
        """Delete a licence of the team (team admins and owners)."""
        licence = self.get_object()
        require_manager(self.membership())
        delete_licence(licence)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="licenses_templates", responses=LicenceTemplateSerializer(many=True)
    )
    @action(detail=False, methods=["get"])
    def templates(self, request):
        """Every catalog application with the variables its licences are expected to set.

        Limitation: epiccore 0.0.28 declares a single template as this answer; the list of
        every application's templates is kept, and epiccore reads it as an empty template.
        """
        applications = Application.objects.select_related("licence_template").order_by("id")
        page = self.paginate_queryset(applications)
        return self.get_paginated_response(LicenceTemplateSerializer(page, many=True).data)
