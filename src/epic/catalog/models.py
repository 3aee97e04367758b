"""Clusters, their queues, and the applications that run on them."""

from django.db import models
from django.utils import timezone


class Backend(models.TextChoices):
    """Which compute backend runs a cluster's jobs."""

    LOCAL = "local", "This machine"
    SLURM = "slurm", "Slurm"


class Cluster(models.Model):
    """A place jobs run: this machine or a Slurm cluster."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=1000, blank=True)
    backend = models.CharField(max_length=10, choices=Backend.choices, default=Backend.LOCAL)

    def __str__(self) -> str:
        return self.name


class Queue(models.Model):
    """A queue of a cluster, with the shape of its nodes and its limits."""

    queue_code = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=1000, blank=True)
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="queues")
    partition = models.CharField(max_length=100, blank=True)
    max_runtime = models.PositiveIntegerField(default=24, help_text="Hours.")
    max_allocation = models.PositiveIntegerField(help_text="Most cores one job step may use.")
    cpus = models.PositiveIntegerField(default=1, help_text="CPU sockets per node.")
    cores_per_cpu = models.PositiveIntegerField(default=1)
    threads_per_core = models.PositiveIntegerField(default=1)
    memory = models.CharField(max_length=50, blank=True)
    cpu_generation = models.CharField(max_length=100, default="unknown")
    node_count = models.PositiveIntegerField(default=1)
    maintenance_mode = models.BooleanField(default=False)
    sla_name = models.CharField(max_length=100, default="Standard")
    sla_description = models.CharField(max_length=1000, blank=True)
    core_hour_price = models.DecimalField(
        max_digits=12, decimal_places=4, default=0, help_text="Price of one core for one hour."
    )
    node_hour_price = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="Price of one whole node for one hour; when set, the queue bills by node.",
    )
    gpus_per_node = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.queue_code

    @property
    def cores_per_node(self) -> int:
        """Physical cores on one node."""
        return self.cpus * self.cores_per_cpu

    @property
    def total_cores(self) -> int:
        """Physical cores on the whole queue: the most that may run at once."""
        return self.cores_per_node * self.node_count


class Application(models.Model):
    """A product, such as OpenFOAM, with one or more versions."""

    product_name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    small_print = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.product_name


class ApplicationVersion(models.Model):
    """One runnable version of an application: its driver, environment and queues."""

    app_code = models.CharField(max_length=30, unique=True)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=50)
    driver = models.CharField(max_length=30, help_text="Name of the driver in epic.software.")
    environment = models.JSONField(default=dict, blank=True)
    # Bash run before and after every step, and sourced before every command of a step.
    start_script = models.TextField(blank=True)
    stop_script = models.TextField(blank=True)
    environment_script = models.TextField(blank=True)
    software_core_hour_price = models.DecimalField(
        max_digits=12, decimal_places=4, default=0, help_text="Software price per core-hour."
    )
    queues = models.ManyToManyField(Queue, related_name="application_versions", blank=True)
    created = models.DateTimeField(default=timezone.now)
    modified = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.app_code


class DesktopNodeType(models.Model):
    """A kind of machine a browser desktop can be launched on."""

    node_code = models.CharField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=100)
    cores = models.PositiveIntegerField()
    gpus = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.node_code
