"""Serializers for job specs (what users send) and jobs and steps (what they read)."""

from decimal import Decimal

from django.db.models import F, Prefetch
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from epic.api.fields import StrictBooleanField, StrictCharField, StrictIntegerField
from epic.billing.pricing import money_text
from epic.billing.services import exchange_factor, in_currency
from epic.catalog.models import Queue
from epic.catalog.serializers import QueueSerializer
from epic.data.paths import SCHEME, parse_folder_path
from epic.jobs.models import Job, JobStep, LogRefresh, wallclock_of
from epic.jobs.states import JobState, StepState
from epic.licences.services import redact

UPLOAD_ENDINGS = ["complete", "failure", "cancel"]
TASK_DISTRIBUTIONS = ["core", "socket", "node", "device"]
MAX_HOURS = 24 * 365
# What the step list shows of a step, read as rows: lists of jobs carry many steps.
STEP_COLUMNS = [
    "id",
    "job_id",
    "run_if_previous_step_fails",
    "step_name",
    "node_count",
    "num_tasks",
    "tasks_per_node",
    "threads_per_task",
    "max_runtime",
    "state",
    "exit_code",
    "start",
    "end",
    "local_job_id",
    "scheduler_reason",
]
# What JobSerializer reads of a job and of the rows it names.
JOB_COLUMNS = [
    "app_version__app_code",
    "app_version__application__product_name",
    "submitted_by__username",
    "name",
    "array",
    "queue",
    "project",
    "invoice_reference",
    "app_options",
    "config",
    "input_path",
    "state",
    "status_reason",
    "requires_auth",
    "quoted_cost",
    "quoted_costs",
    "cost_currency",
    "created",
]
# The status each state is shown as, as get_state_display() answers it but without its work.
JOB_STATUS = dict(JobState.choices)
STEP_STATUS = dict(StepState.choices)


class TaskSpecSerializer(serializers.Serializer):
    """One task of a job: the resources one step needs."""

    reference = StrictCharField(min_length=1, max_length=25)
    partitions = StrictIntegerField(min_value=1, max_value=100_000)
    runtime = StrictIntegerField(min_value=1, max_value=MAX_HOURS)
    task_distribution = serializers.ChoiceField(choices=TASK_DISTRIBUTIONS, default="core")
    tasks_per_device = StrictIntegerField(min_value=1, max_value=1024, default=1)
    hyperthreading = StrictBooleanField(default=True)


class JobSpecSerializer(serializers.Serializer):
    """What to run: an application version, its tasks, and optionally a project and queue."""

    app_code = StrictCharField(min_length=1, max_length=30)
    project = StrictIntegerField(min_value=-1, required=False, allow_null=True)
    tasks = TaskSpecSerializer(many=True, allow_empty=False, max_length=32)
    queue_code = StrictCharField(min_length=1, max_length=100, required=False)


class ClusterSpecSerializer(serializers.Serializer):
    """Where to run."""

    queue_code = StrictCharField(min_length=1, max_length=100)


class DataSpecSerializer(serializers.Serializer):
    """A folder of the user's data, as an epic:// path."""

    path = StrictCharField(max_length=len(SCHEME) + 1024)

    def validate_path(self, value: str) -> str:
        """Check the path cannot leave the user's prefix; keep it as the relative folder."""
        return parse_folder_path(value)


class JobConfigurationSerializer(serializers.Serializer):
    """When results go back to the data store, and how."""

    upload = serializers.ListField(
        child=serializers.ChoiceField(choices=UPLOAD_ENDINGS), max_length=3, default=list
    )
    overwrite_existing = StrictBooleanField(default=True)
    data_sync_interval = StrictIntegerField(min_value=0, max_value=10**6, default=0)
    local_submission = StrictBooleanField(default=False)


class JobBindingSerializer(serializers.Serializer):
    """One job of a submission: its spec, options, queue and input folder."""

    name = StrictCharField(min_length=1, max_length=100)
    spec = JobSpecSerializer()
    app_options = serializers.DictField(default=dict)
    cluster = ClusterSpecSerializer()
    input_data = DataSpecSerializer()


class JobArraySpecSerializer(serializers.Serializer):
    """A submission: one or more jobs that share a configuration and common data."""

    name = StrictCharField(min_length=1, max_length=100, default="Job Array")
    config = JobConfigurationSerializer()
    jobs = JobBindingSerializer(many=True, allow_empty=False, max_length=1000)
    common_data = DataSpecSerializer(required=False, allow_null=True)


class JobStepSerializer(serializers.ModelSerializer):
    """A job step in lists and inside a job."""

    parent_job = serializers.IntegerField(source="job_id")
    status = serializers.CharField(source="get_state_display")
    # None until the step has started.
    wallclock = serializers.CharField(allow_null=True)

    class Meta:
        model = JobStep
        fields = [
            "id",
            "parent_job",
            "run_if_previous_step_fails",
            "step_name",
            "node_count",
            "num_tasks",
            "tasks_per_node",
            "threads_per_task",
            "max_runtime",
            "status",
            "exit_code",
            "start",
            "end",
            "wallclock",
            "local_job_id",
            "scheduler_reason",
        ]

    def to_representation(self, step: dict) -> dict:
        """The fields above, built directly from a row of STEP_COLUMNS: lists carry many."""
        return step_fields(step, timezone.get_current_timezone())


def step_fields(step: dict, zone) -> dict:
    """A step, read as a row of STEP_COLUMNS, as lists show it: JobStepSerializer's fields.

    Timestamps are shown in `zone`, the current time zone, read once by the caller.
    """
    return {
        "id": step["id"],
        "parent_job": step["job_id"],
        "run_if_previous_step_fails": step["run_if_previous_step_fails"],
        "step_name": step["step_name"],
        "node_count": step["node_count"],
        "num_tasks": step["num_tasks"],
        "tasks_per_node": step["tasks_per_node"],
        "threads_per_task": step["threads_per_task"],
        "max_runtime": step["max_runtime"],
        "status": STEP_STATUS.get(step["state"], step["state"]),
        "exit_code": step["exit_code"],
        "start": _timestamp(step["start"], zone),
        "end": _timestamp(step["end"], zone),
        "wallclock": wallclock_of(step["start"], step["end"]),
        "local_job_id": step["local_job_id"],
        "scheduler_reason": step["scheduler_reason"],
    }


def _timestamp(moment, zone) -> str | None:
    """A datetime in a time zone as DRF's DateTimeField writes it (ISO 8601, Z for UTC)."""
    if moment is None:
        return None
    text = moment.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class JobLogSerializer(serializers.Serializer):
    """The tails of a step's logs, with the values of the team's licences masked."""

    stdout = serializers.SerializerMethodField()
    stderr = serializers.SerializerMethodField()
    app = serializers.CharField(source="job.app_version.app_code")
    last_update = serializers.SerializerMethodField()

    def get_stdout(self, step: JobStep) -> str:
        """The stdout tail, licence values masked."""
        return redact(step.stdout_tail, step.job.team_id, step.job.app_version.application_id)

    def get_stderr(self, step: JobStep) -> str:
        """The stderr tail, licence values masked."""
        return redact(step.stderr_tail, step.job.team_id, step.job.app_version.application_id)

    def get_last_update(self, step: JobStep) -> str:
        """When the tails were last read, or an empty string if never."""
        return step.logs_updated.isoformat() if step.logs_updated else ""


class JobStepDetailSerializer(JobStepSerializer):
    """A job step read on its own, with its logs."""

    logs = JobLogSerializer(source="*")

    class Meta(JobStepSerializer.Meta):
        fields = [*JobStepSerializer.Meta.fields[:-2], "scheduler_reason", "logs"]

    def to_representation(self, step: JobStep) -> dict:
        """Every declared field, the ordinary way (the list's shortcut has no logs)."""
        return serializers.ModelSerializer.to_representation(self, step)


def attach_steps(jobs: list[Job]) -> None:
    """Give each job its steps, as rows of STEP_COLUMNS with their charges, in one query."""
    by_job = {job.pk: [] for job in jobs}
    rows = (
        JobStep.objects.filter(job_id__in=by_job)
        .order_by("index")
        .values(*STEP_COLUMNS, charge=F("spend__amount"))
    )
    for row in rows:
        by_job[row["job_id"]].append(row)
    for job in jobs:
        job.shown_steps = by_job[job.pk]


class JobListSerializer(serializers.ListSerializer):
    """Jobs, with the steps of them all read at once."""

    def to_representation(self, data) -> list:
        """Each job as JobSerializer shows it."""
        jobs = list(data)
        attach_steps(jobs)
        return [self.child.to_representation(job) for job in jobs]


# One serializer shows every job's queue: its fields are built once, not for every request.
SHOWN_QUEUE = QueueSerializer()


class JobSerializer(serializers.ModelSerializer):
    """A job as users read it."""

    app = serializers.CharField(source="app_version.application.product_name")
    application_version = serializers.CharField(source="app_version.app_code")
    cost = serializers.SerializerMethodField()
    status = serializers.CharField(source="get_state_display")
    submitted_by = serializers.CharField(source="submitted_by.username")
    submitted_at = serializers.DateTimeField(source="created")
    finished = serializers.BooleanField()
    resource = serializers.SerializerMethodField()
    project = serializers.IntegerField(source="project_id", allow_null=True)
    invoice_reference = serializers.SerializerMethodField()
    job_steps = JobStepSerializer(source="steps", many=True)
    input_data = serializers.SerializerMethodField()
    array = serializers.IntegerField(source="array_id")

    class Meta:
        model = Job
        list_serializer_class = JobListSerializer
        fields = [
            "id",
            "name",
            "app",
            "app_options",
            "application_version",
            "cost",
            "status",
            "submitted_by",
            "submitted_at",
            "finished",
            "resource",
            "project",
            "invoice_reference",
            "config",
            "job_steps",
            "input_data",
            "requires_auth",
            "array",
            "status_reason",
        ]

    def to_representation(self, job: Job) -> dict:
        """The fields above, built directly: a page of jobs is read on every poll.

        The job should come from `with_shown_fields`; its steps are read here unless a list
        read them for all its jobs.
        """
        if not hasattr(job, "shown_steps"):
            attach_steps([job])
        zone = timezone.get_current_timezone()
        return {
            "id": job.pk,
            "name": job.name,
            "app": job.app_version.application.product_name,
            "app_options": job.app_options,
            "application_version": job.app_version.app_code,
            "cost": self.get_cost(job),
            "status": JOB_STATUS.get(job.state, job.state),
            "submitted_by": job.submitted_by.username,
            "submitted_at": _timestamp(job.created, zone),
            "finished": job.finished,
            "resource": self.get_resource(job),
            "project": job.project_id,
            "invoice_reference": self.get_invoice_reference(job),
            "config": job.config,
            "job_steps": [step_fields(step, zone) for step in job.shown_steps],
            "input_data": self.get_input_data(job),
            "requires_auth": job.requires_auth,
            "array": job.array_id,
            "status_reason": job.status_reason,
        }

    @extend_schema_field(QueueSerializer)
    def get_resource(self, job: Job) -> dict:
        """The job's queue, serialised once per queue for a whole list."""
        cache = self.context.setdefault("queues_shown", {})
        if job.queue_id not in cache:
            cache[job.queue_id] = SHOWN_QUEUE.to_representation(job.queue)
        return cache[job.queue_id]

    def get_cost(self, job: Job) -> str:
        """The quoted maximum until the job ends, then what it was charged; in the reader's
        display currency."""
        currency = self.context.get("currency", job.cost_currency)
        if not job.finished and currency in job.quoted_costs:
            return money_text(Decimal(job.quoted_costs[currency]), currency)
        amount = _charged(job) if job.finished else job.quoted_cost
        return money_text(in_currency(amount, currency, self.currency_factor(currency)), currency)

    def currency_factor(self, currency: str) -> Decimal:
        """Units of `currency` per unit of the base currency, read once for a whole list."""
        factors = self.context.setdefault("exchange_factors", {})
        if currency not in factors:
            factors[currency] = exchange_factor(currency)
        return factors[currency]

    def get_invoice_reference(self, job: Job) -> str | None:
        """The invoice reference, or null when none was given."""
        return job.invoice_reference or None

    def get_input_data(self, job: Job) -> dict:
        """The input folder as an epic:// path."""
        return {"path": SCHEME + job.input_path}


def with_shown_fields(jobs):
    """Jobs with what JobSerializer shows of them, and nothing else.

    The names it shows are joined in (a count leaves such joins out); a page's queues are
    read in one more query, and its steps in another when it is shown.
    """
    return (
        jobs.select_related("app_version__application", "submitted_by")
        .only(*JOB_COLUMNS)
        .prefetch_related(Prefetch("queue", queryset=Queue.objects.select_related("cluster")))
    )


def _charged(job: Job) -> Decimal:
    """What a job's steps were charged."""
    charges = (step["charge"] for step in job.shown_steps if step["charge"] is not None)
    return sum(charges, Decimal(0))


class LogRefreshSerializer(serializers.ModelSerializer):
    """A request to refresh a step's logs."""

    job_step = serializers.IntegerField(source="step_id")
    response_recieved = serializers.BooleanField(read_only=True)

    class Meta:
        model = LogRefresh
        fields = ["id", "job_step", "response_recieved"]


class JobUpdateSerializer(serializers.Serializer):
    """What may change in a job before it starts."""

    app_options = serializers.DictField(required=False, allow_null=True)
    config = JobConfigurationSerializer(required=False)


class MoneySerializer(serializers.Serializer):
    """An amount of money, as a decimal string, with its currency."""

    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    currency = serializers.CharField()
    currency_symbol = serializers.CharField()


class TaskQuoteSerializer(serializers.Serializer):
    """The itemised price of one task (or of all tasks) on one queue."""

    reference = serializers.CharField()
    queue_code = serializers.CharField()
    iaas_cost = MoneySerializer()
    software_cost = MoneySerializer()
    service_charge = MoneySerializer()
    discount = MoneySerializer()
    tax = MoneySerializer()
    total = MoneySerializer()


class UnavailableQueueSerializer(serializers.Serializer):
    """A queue that cannot run the tasks, and why."""

    queue_code = serializers.CharField()
    reason = serializers.CharField()


class JobQuoteSerializer(serializers.Serializer):
    """Prices per task and totals per queue, and the queues that cannot run the tasks."""

    task_quotes = TaskQuoteSerializer(many=True)
    totals = TaskQuoteSerializer(many=True)
    unavailable = UnavailableQueueSerializer(many=True)


class ResidualValuesSerializer(serializers.Serializer):
    """The values of one residual variable (or of the x axis, named time)."""

    variable_name = serializers.CharField()
    values = serializers.ListField(child=serializers.CharField(allow_blank=True))


class JobResidualsSerializer(serializers.Serializer):
    """The residual variables of a job and the values asked for."""

    variables = serializers.ListField(child=serializers.CharField())
    residual_values = ResidualValuesSerializer(many=True)
