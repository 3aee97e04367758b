"""Solver residuals of a job, read from its steps by the application's driver."""

from rest_framework import serializers

from epic.compute.registry import backend_for
from epic.jobs.models import Job
from epic.jobs.states import StepState
from epic.software.registry import get_driver
from epic.worker.launches import launch_for

X_AXIS = "time"


def series_of(job: Job) -> dict | None:
    """The residual series of the job's latest step that has one: stored, or read live."""
    driver = get_driver(job.app_version.driver)
    for step in job.steps.order_by("-index"):
        if step.residuals:
            return step.residuals
        if step.state == StepState.RUNNING:
            launch = launch_for(step)
            lines = backend_for(job.queue).stdout_lines(launch)
            series = driver.residuals(step.step_name, lines)
            if series is not None:
                return {"times": series.times, "fields": series.fields}
    return None


def for_job(job: Job, wanted: list[str] | None) -> dict:
    """The API answer: variable names, then the x axis and the values of the wanted ones."""
    series = series_of(job) or {"times": [], "fields": {}}
    # Sorted: PostgreSQL's JSON keeps no key order, and the answer must not depend on it.
    names = sorted(series["fields"])
    wanted = names if wanted is None else wanted
    unknown = [name for name in wanted if name not in series["fields"]]
    if unknown:
        raise serializers.ValidationError({"variables": [f"No residuals for {unknown}."]})

    values = [{"variable_name": X_AXIS, "values": series["times"]}] if series["times"] else []
    values += [{"variable_name": name, "values": series["fields"][name]} for name in wanted]
    return {"variables": names, "residual_values": values}
