"""Job, job step and log refresh endpoints."""

import re
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from epic.accounts.services import current_membership, profile_of
from epic.billing.authorisation import decide
from epic.billing.pricing import money
from epic.billing.serializers import JobAuthDecisionSerializer, JobAuthStatusSerializer
from epic.billing.views import auth_status
from epic.jobs import residuals
from epic.jobs.models import Job, JobStep, LogRefresh
from epic.jobs.serializers import (
    STEP_COLUMNS,
    JobArraySpecSerializer,
    JobLogSerializer,
    JobQuoteSerializer,
    JobResidualsSerializer,
    JobSerializer,
    JobSpecSerializer,
    JobStepDetailSerializer,
    JobStepSerializer,
    JobUpdateSerializer,
    LogRefreshSerializer,
    with_shown_fields,
)
from epic.jobs.services import (
    SubmissionLookups,
    cancel_step,
    prepare_binding,
    quote,
    request_cancel,
    submit,
    update_pending,
)
from epic.jobs.states import StepState
from epic.worker.wakeup import wake_worker

POSITIVE_ID = re.compile(r"[1-9][0-9]{0,17}")
# The actions that answer with JobSerializer.
SHOWN_ACTIONS = {"list", "retrieve", "create"}
# A refresh answered this recently counts as an answer to a repeated request.
REFRESH_REUSE = timedelta(seconds=5)


def positive_int_param(request, name: str) -> int | None:
    """An optional positive integer query parameter, or a 400 naming it."""
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if not POSITIVE_ID.fullmatch(value):
        raise serializers.ValidationError({name: ["Must be a positive integer."]})
    return int(value)


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("job_array", int, description="The id of a job array.")]
    )
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The jobs of the caller's current team."""

    serializer_class = JobSerializer

    def get_queryset(self):
        """The team's jobs, newest first, with what the action reads fetched with them."""
        if getattr(self, "swagger_fake_view", False):
            return Job.objects.none()
        team = current_membership(self.request).team
        jobs = Job.objects.filter(team=team).order_by("-id")
        array = positive_int_param(self.request, "job_array")
        if array is not None:
            jobs = jobs.filter(array_id=array)
        if self.action in SHOWN_ACTIONS:
            return with_shown_fields(jobs)
        return jobs.select_related("app_version__application", "submitted_by", "queue__cluster")

    def get_serializer_context(self) -> dict:
        """Money is shown in the reader's display currency."""
        currency = profile_of(self.request.user).display_currency
        return {**super().get_serializer_context(), "currency": currency}

    @extend_schema(request=JobArraySpecSerializer, responses={201: JobSerializer(many=True)})
    def create(self, request):
        """Submit a job array; answer the created jobs."""
        membership = current_membership(request)
        spec = JobArraySpecSerializer(data=request.data)
        spec.is_valid(raise_exception=True)

        prepared, errors = [], {}
        lookups = SubmissionLookups(membership)
        for index, binding in enumerate(spec.validated_data["jobs"]):
            try:
                prepared.append(prepare_binding(binding, membership, lookups))
            except serializers.ValidationError as error:
                errors[index] = error.detail
        if errors:
            raise serializers.ValidationError({"jobs": errors})

        jobs = submit(spec.validated_data, prepared, membership)
        created = self.get_queryset().filter(pk__in=[job.pk for job in jobs]).order_by("id")
        answer = JobSerializer(created, many=True, context=self.get_serializer_context())
        return Response(answer.data, status=status.HTTP_201_CREATED)

    @extend_schema(request=JobUpdateSerializer, responses=JobUpdateSerializer)
    def partial_update(self, request, pk=None):
        """Change app_options or config of a job that has not started yet."""
        job = self.get_object()
        update = JobUpdateSerializer(data=request.data)
        update.is_valid(raise_exception=True)
        job = update_pending(
            job, update.validated_data.get("app_options"), update.validated_data.get("config")
        )
        return Response({"app_options": job.app_options, "config": job.config})

    @extend_schema(
        operation_id="job_quote", request=JobSpecSerializer, responses=JobQuoteSerializer
    )
    @action(detail=False, methods=["post"])
    def quote(self, request):
        """Price a job spec on the queues that can run it."""
        spec = JobSpecSerializer(data=request.data)
        spec.is_valid(raise_exception=True)
        currency = profile_of(request.user).display_currency
        answer = quote(spec.validated_data, current_membership(request), currency)
        return Response(
            {
                "task_quotes": [_price_json(price) for price in answer["task_quotes"]],
                "totals": [_price_json(price) for price in answer["totals"]],
                "unavailable": answer["unavailable"],
            }
        )

    @extend_schema(responses=JobAuthStatusSerializer)
    @extend_schema(methods=["PUT"], request=JobAuthDecisionSerializer)
    @action(detail=True, methods=["get", "put"], url_path="auth")
    def auth(self, request, pk=None):
        """The job's authorisation status; PUT authorises or rejects it (admins and owners)."""
        job = self.get_object()
        membership = current_membership(request)
        currency = profile_of(request.user).display_currency
        if request.method == "PUT":
            decision = JobAuthDecisionSerializer(data=request.data)
            decision.is_valid(raise_exception=True)
            job = decide(job, membership, decision.validated_data["state"])
        return Response(auth_status(job, membership, currency))

    @extend_schema(operation_id="job_cancel", request=None, responses={204: None})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel the job: running steps are stopped and no more start."""
        request_cancel(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "variables",
                OpenApiTypes.STR,
                many=True,
                description="Variable names: repeated, or separated by commas.",
            )
        ],
        responses=JobResidualsSerializer,
    )
    @action(detail=True, methods=["get"])
    def residuals(self, request, pk=None):
        """The solver residuals of the job, with simulation time as the x axis."""
        job = self.get_object()
        given = request.query_params.getlist("variables")
        wanted = [name for value in given for name in value.split(",") if name] or None
        return Response(residuals.for_job(job, wanted))


def _price_json(price) -> dict:
    """A TaskPrice as the API shows it."""
    return {
        "reference": price.reference,
        "queue_code": price.queue_code,
        "iaas_cost": money(price.iaas_cost, price.currency),
        "software_cost": money(price.software_cost, price.currency),
        "service_charge": money(price.service_charge, price.currency),
        "discount": money(price.discount, price.currency),
        "tax": money(price.tax, price.currency),
        "total": money(price.total, price.currency),
    }


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("parent_job", int, description="The id of a job.")]
    )
)
class JobStepViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The steps of the caller's current team's jobs."""

    def get_queryset(self):
        """The team's steps, filtered by parent_job."""
        if getattr(self, "swagger_fake_view", False):
            return JobStep.objects.none()
        team = current_membership(self.request).team
        steps = JobStep.objects.filter(team=team).order_by("-job_id", "index")
        if self.action == "list":
            steps = steps.values(*STEP_COLUMNS)
        else:
            steps = steps.select_related("job__app_version")
        parent = positive_int_param(self.request, "parent_job")
        if parent is not None:
            steps = steps.filter(job_id=parent)
        return steps

    def get_serializer_class(self):
        """Reads carry the logs; lists carry the scheduler id."""
        return JobStepSerializer if self.action == "list" else JobStepDetailSerializer

    @extend_schema(operation_id="jobstep_cancel", request=None, responses={204: None})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel one step: stop it if it runs, or make sure it never starts."""
        cancel_step(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=JobLogSerializer)
    @action(detail=True, methods=["get"])
    def logs(self, request, pk=None):
        """The latest tails of the step's stdout and stderr."""
        step = self.get_object()
        return Response(JobStepDetailSerializer(step).data["logs"])


class LogRefreshViewSet(
    mixins.CreateModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Requests to refresh a running step's logs."""

    serializer_class = LogRefreshSerializer
    queryset = LogRefresh.objects.none()

    def get_queryset(self):
        """Refresh requests of the caller's current team."""
        team = current_membership(self.request).team
        return LogRefresh.objects.filter(step__team=team)

    def create(self, request):
        """Ask for fresh logs; a recent answer or a step that has ended answers at once."""
        step_id = request.data.get("job_step") if isinstance(request.data, dict) else None
        if isinstance(step_id, bool) or not isinstance(step_id, int):
            raise serializers.ValidationError({"job_step": ["A job step id is required."]})
        team = current_membership(request).team
        step = JobStep.objects.filter(pk=step_id, team=team).first()
        if step is None:
            raise serializers.ValidationError({"job_step": [f"No job step {step_id}."]})

        refresh = self._recent_answer(step) or self._new_request(step, request.user)
        return Response(LogRefreshSerializer(refresh).data, status=status.HTTP_201_CREATED)

    def _recent_answer(self, step: JobStep) -> LogRefresh | None:
        """A refresh of this step answered in the last few seconds."""
        since = timezone.now() - REFRESH_REUSE
        return step.refreshes.filter(answered_at__gte=since).order_by("-id").first()

    def _new_request(self, step: JobStep, user) -> LogRefresh:
        """A new request; steps that are not running have final logs, so it is answered now."""
        answered = None if step.state == StepState.RUNNING else timezone.now()
        refresh = LogRefresh.objects.create(step=step, requested_by=user, answered_at=answered)
        if answered is None:
            wake_worker()
        return refresh
