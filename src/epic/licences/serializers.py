"""Serializers for licences (what admins send, what members read) and licence templates."""

from rest_framework import serializers

from epic.api.fields import StrictCharField, StrictIntegerField
from epic.catalog.models import Application
from epic.licences.models import Licence, template_id
from epic.licences.variables import MASK, MAX_VALUE_LENGTH, MAX_VARIABLES, name_problem

MAX_ID = 2**63 - 1


class EnvVarSerializer(serializers.Serializer):
    """One variable a licence sets: a name and its secret value."""

    variable_name = StrictCharField(min_length=1, max_length=128, trim_whitespace=False)
    value = StrictCharField(min_length=1, max_length=MAX_VALUE_LENGTH, trim_whitespace=False)

    def validate_variable_name(self, name: str) -> str:
        """Refuse names that are not variable names or that a licence may not set."""
        problem = name_problem(name)
        if problem:
            raise serializers.ValidationError(problem)
        return name


class WritableLicenceSerializer(serializers.Serializer):
    """A new licence, as a team admin sends it and as the create call answers it."""

    display_name = StrictCharField(min_length=1, max_length=30)
    description = StrictCharField(
        min_length=1, max_length=1000, required=False, allow_null=True, default=None
    )
    environment = EnvVarSerializer(many=True, allow_empty=False, max_length=MAX_VARIABLES)
    application = StrictIntegerField(
        min_value=1, max_value=MAX_ID, required=False, allow_null=True, default=None
    )

    def validate_environment(self, environment: list[dict]) -> list[dict]:
        """Refuse a variable named twice, which would leave it unclear which value applies."""
        names = [item["variable_name"] for item in environment]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise serializers.ValidationError(f"Variables named more than once: {duplicates}.")
        return environment

    def validate_application(self, application_id: int | None) -> Application | None:
        """Turn the application id into the catalog's application."""
        if application_id is None:
            return None
        application = Application.objects.filter(pk=application_id).first()
        if application is None:
            raise serializers.ValidationError(f"No application {application_id}.")
        return application

    def to_representation(self, licence: Licence) -> dict:
        """The created licence, with the application as its id."""
        return {
            "id": str(licence.pk),
            "display_name": licence.display_name,
            "description": licence.description,
            "environment": licence.environment,
            "application": licence.application_id,
        }


class ApplicationRefSerializer(serializers.Serializer):
    """An application as licences and templates name it: its id and product name."""

    pk = serializers.IntegerField()
    name = serializers.CharField(source="product_name")


class LicenceSerializer(serializers.ModelSerializer):
    """A licence as team members read it; values are masked unless `reveal` is in context."""

    environment = serializers.SerializerMethodField()
    application = ApplicationRefSerializer(allow_null=True)

    class Meta:
        model = Licence
        fields = ["id", "active", "display_name", "description", "environment", "application"]

    def get_environment(self, licence: Licence) -> list[dict[str, str]]:
        """The variables, with each value replaced by a mask for readers who may not see it."""
        if self.context.get("reveal"):
            return licence.environment
        return [
            {"variable_name": item["variable_name"], "value": MASK} for item in licence.environment
        ]


class LicenceTemplateSerializer(serializers.Serializer):
    """An application with the variables its licences are expected to set."""

    id = serializers.SerializerMethodField()
    application = ApplicationRefSerializer(source="*")
    environment = serializers.SerializerMethodField()

    def get_id(self, application: Application) -> str:
        """The template's stable id, derived from the application."""
        return str(template_id(application.pk))

    def get_environment(self, application: Application) -> list[dict]:
        """The expected variables, or none where the catalog declares no template."""
        template = getattr(application, "licence_template", None)
        return template.variables if template else []
