"""Serializers for projects."""

from rest_framework import serializers

from epic.api.fields import StrictBooleanField, StrictCharField
from epic.billing.services import display_money, reader_currency
from epic.projects.models import Project


class ProjectSerializer(serializers.ModelSerializer):
    """A project in lists and after an update."""

    class Meta:
        model = Project
        fields = ["pk", "project_id", "description", "closed"]
        read_only_fields = ["pk", "project_id"]


class ProjectUpdateSerializer(serializers.ModelSerializer):
    """What a team admin may change: the description and whether the project is closed."""

    description = StrictCharField(allow_null=True, allow_blank=True, max_length=1000)
    closed = StrictBooleanField()

    class Meta:
        model = Project
        fields = ["description", "closed"]


class ProjectDetailSerializer(ProjectSerializer):
    """A project read on its own, with who may bill it and what it has spent."""

    authorized_user_profiles = serializers.SerializerMethodField()
    has_budget = serializers.SerializerMethodField()
    spend_limit = serializers.SerializerMethodField()
    current_spend = serializers.SerializerMethodField()

    class Meta(ProjectSerializer.Meta):
        fields = [
            *ProjectSerializer.Meta.fields,
            "all_users",
            "authorized_user_profiles",
            "has_budget",
            "spend_limit",
            "current_spend",
        ]

    def get_authorized_user_profiles(self, project: Project) -> list[int]:
        """Profile ids of the users named on the project."""
        return sorted(user.profile.pk for user in project.authorized_users.all())

    def get_has_budget(self, project: Project) -> bool:
        """Whether a monthly spend limit is set."""
        return project.spend_limit is not None

    def get_spend_limit(self, project: Project) -> dict | None:
        """The monthly spend limit in the reader's display currency, or null when there is none."""
        if project.spend_limit is None:
            return None
        return display_money(project.spend_limit, reader_currency(self.context))

    def get_current_spend(self, project: Project) -> dict:
        """What the project's jobs have been charged this month, in the reader's currency."""
        from epic.billing.ledger import month_spend

        return display_money(month_spend(project=project), reader_currency(self.context))
