"""Teams and profile settings endpoints."""

from django.db.models import Count, OuterRef, Subquery
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import api_view
from rest_framework.response import Response

from epic.accounts.models import Membership, Role, Team
from epic.accounts.serializers import (
    ProfileSettingsSerializer,
    TeamDetailSerializer,
    TeamSerializer,
)
from epic.accounts.services import profile_of


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("name", str, description="Team name contains."),
            OpenApiParameter("role", str, enum=Role.values, description="Your role."),
        ]
    )
)
class TeamViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The teams the caller is a member of; any other team does not exist for them."""

    queryset = Team.objects.none()

    def get_queryset(self):
        """Teams of the caller, annotated with member count and the caller's role."""
        own_role = Membership.objects.filter(team=OuterRef("pk"), user=self.request.user)
        members = (
            Membership.objects.filter(team=OuterRef("pk"))
            .values("team")
            .annotate(count=Count("pk"))
            .values("count")
        )
        teams = (
            Team.objects.filter(memberships__user=self.request.user)
            .annotate(member_count=Subquery(members))
            .annotate(caller_role=Subquery(own_role.values("role")[:1]))
            .order_by("id")
        )
        name = self.request.query_params.get("name")
        if name:
            teams = teams.filter(name__icontains=name)
        role = self.request.query_params.get("role")
        if role:
            if role not in Role.values:
                raise serializers.ValidationError({"role": [f"Must be one of {Role.values}."]})
            teams = teams.filter(caller_role=role)
        return teams

    def get_serializer_class(self):
        """Detail reads carry the member list."""
        return TeamDetailSerializer if self.action == "retrieve" else TeamSerializer


@extend_schema(
    methods=["GET"], operation_id="profile_settings_list", responses=ProfileSettingsSerializer
)
@extend_schema(
    methods=["PATCH"],
    operation_id="profile_settings_partial_update",
    request=ProfileSettingsSerializer,
    responses=ProfileSettingsSerializer,
)
@api_view(["GET", "PATCH"])
def profile_settings(request):
    """The caller's profile settings; PATCH changes the display currency."""
    profile = profile_of(request.user)
    if request.method == "PATCH":
        update = ProfileSettingsSerializer(profile, data=request.data, partial=True)
        update.is_valid(raise_exception=True)
        update.save()
    return Response(ProfileSettingsSerializer(profile).data)
