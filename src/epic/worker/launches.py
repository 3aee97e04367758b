"""Build a backend's StepLaunch from a job step."""

from epic.compute.base import StepLaunch
from epic.jobs.models import JobStep
from epic.licences.services import environment_for
from epic.worker.staging import case_dir, job_dir


def launch_for(
    step: JobStep,
    after: tuple[int, bool] | None = None,
    watching: bool = False,
    licences: dict[str, str] | None = None,
) -> StepLaunch:
    """The launch description of a step: its folders, plan, resources and environment.

    `after` chains the step to the one before it (see StepLaunch.after). A launch built for
    `watching` a started step leaves out the team's licences, which only a start needs;
    `licences` gives them where the caller has read them already.
    """
    job = step.job
    if licences is None:
        licences = {} if watching else environment_for(job.team, job.app_version.application_id)
    environment = {**job.app_version.environment, **licences, **step.plan.get("environment", {})}
    return StepLaunch(
        job_id=job.pk,
        step_id=step.pk,
        case_dir=case_dir(job.pk),
        step_dir=job_dir(job.pk) / "steps" / str(step.pk),
        plan=step.plan,
        num_tasks=step.num_tasks,
        threads_per_task=step.threads_per_task,
        max_runtime_hours=step.max_runtime,
        environment=environment,
        scripts={
            "start_script": job.app_version.start_script,
            "stop_script": job.app_version.stop_script,
            "environment_script": job.app_version.environment_script,
        },
        after=after,
        team_id=job.team_id,
    )
