"""Serializers for applications and cluster queues."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from epic.catalog.models import Application, ApplicationVersion, DesktopNodeType, Queue


class ProductSerializer(serializers.ModelSerializer):
    """The product part of an application."""

    name = serializers.CharField(source="product_name")

    class Meta:
        model = Application
        fields = ["name", "description", "small_print"]


class ApplicationVersionSerializer(serializers.ModelSerializer):
    """One version and the queues it is available on."""

    available_on = serializers.SerializerMethodField()

    class Meta:
        model = ApplicationVersion
        fields = ["app_code", "version", "available_on"]

    def get_available_on(self, version: ApplicationVersion) -> list[str]:
        """Codes of the queues that run this version (prefetched by the view)."""
        return sorted(queue.queue_code for queue in version.queues.all())


class ApplicationListSerializer(serializers.ModelSerializer):
    """An application in the catalog list."""

    product = ProductSerializer(source="*")
    versions = ApplicationVersionSerializer(many=True)
    permission_to_use = serializers.SerializerMethodField()
    supports_cases = serializers.SerializerMethodField()

    class Meta:
        model = Application
        fields = ["id", "product", "versions", "permission_to_use", "supports_cases"]

    def get_permission_to_use(self, application: Application) -> bool:
        """Every catalog application may be used by every team."""
        return True

    def get_supports_cases(self, application: Application) -> bool:
        """Cases (saved job templates) are not offered."""
        return False


class ApplicationDetailSerializer(ApplicationListSerializer):
    """An application read on its own; the API names its version list `version`."""

    version = ApplicationVersionSerializer(many=True, source="versions")

    class Meta(ApplicationListSerializer.Meta):
        fields = ["id", "product", "version", "permission_to_use"]


class SlaSerializer(serializers.Serializer):
    """A queue's service level."""

    name = serializers.CharField(source="sla_name")
    description = serializers.CharField(source="sla_description")


class NodeConfigSerializer(serializers.Serializer):
    """The shape of a queue's nodes."""

    accelerator = serializers.SerializerMethodField()
    cpus = serializers.IntegerField()
    cpu_generation = serializers.CharField()
    cores_per_cpu = serializers.IntegerField()
    threads_per_core = serializers.IntegerField()
    memory = serializers.CharField()

    @extend_schema_field({"type": "object", "nullable": True})
    def get_accelerator(self, queue: Queue) -> None:
        """Accelerators are not modelled yet."""
        return None


class QueueSerializer(serializers.ModelSerializer):
    """A cluster queue as the catalog shows it."""

    cluster_name = serializers.CharField(source="cluster.name")
    reported_avail_tasks = serializers.SerializerMethodField()
    reported_max_tasks = serializers.IntegerField(source="total_cores")
    sla = SlaSerializer(source="*")
    resource_config = NodeConfigSerializer(source="*")
    supports_local_submission = serializers.SerializerMethodField()

    class Meta:
        model = Queue
        fields = [
            "queue_code",
            "name",
            "description",
            "cluster_name",
            "max_runtime",
            "max_allocation",
            "reported_avail_tasks",
            "reported_max_tasks",
            "sla",
            "maintenance_mode",
            "resource_config",
            "supports_local_submission",
        ]

    def get_reported_avail_tasks(self, queue: Queue) -> int:
        """Cores not taken by running steps, where the view annotated it."""
        busy = getattr(queue, "busy_cores", 0) or 0
        return max(queue.total_cores - busy, 0)

    def get_supports_local_submission(self, queue: Queue) -> bool:
        """Submitting from inside the cluster is not offered."""
        return False


class DesktopNodeTypeSerializer(serializers.ModelSerializer):
    """A kind of machine for browser desktops."""

    class Meta:
        model = DesktopNodeType
        fields = ["node_code", "name", "description", "cores", "gpus"]


def _script(name: str, content: str) -> dict:
    """A named script as the configuration endpoint shows it."""
    return {"name": name, "content": content}


class ScriptSerializer(serializers.Serializer):
    """A named script."""

    name = serializers.CharField()
    content = serializers.CharField(allow_blank=True)


class ConfigurationPartSerializer(serializers.Serializer):
    """The start and stop scripts of an application version."""

    start_script = ScriptSerializer()
    stop_script = ScriptSerializer()
    created = serializers.DateTimeField()
    modified = serializers.DateTimeField()
    name = serializers.CharField()


class EnvironmentVariableSerializer(serializers.Serializer):
    """One environment variable."""

    variable_name = serializers.CharField()
    value = serializers.CharField(allow_blank=True)


class ApplicationConfigurationSerializer(serializers.Serializer):
    """What the worker runs around an application version's steps on a queue."""

    application_configuration = ConfigurationPartSerializer()
    environment_script = ScriptSerializer()
    env_variables = EnvironmentVariableSerializer(many=True)
    created = serializers.DateTimeField()
    modified = serializers.DateTimeField()

    def to_representation(self, version: ApplicationVersion) -> dict:
        """The scripts and environment variables, exactly as the worker applies them."""
        return {
            "application_configuration": {
                "start_script": _script("start.sh", version.start_script),
                "stop_script": _script("stop.sh", version.stop_script),
                "created": serializers.DateTimeField().to_representation(version.created),
                "modified": serializers.DateTimeField().to_representation(version.modified),
                "name": version.app_code,
            },
            "environment_script": _script("environment.sh", version.environment_script),
            "env_variables": [
                {"variable_name": name, "value": value}
                for name, value in sorted(version.environment.items())
            ],
            "created": serializers.DateTimeField().to_representation(version.created),
            "modified": serializers.DateTimeField().to_representation(version.modified),
        }
