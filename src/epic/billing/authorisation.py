"""Job authorisation: jobs over a team's threshold wait for an admin's decision."""

from __future__ import annotations

import logging

from django.db import transaction
from rest_framework import exceptions

from epic.accounts.models import Membership, Role
from epic.api.exceptions import Conflict
from epic.api.permissions import MANAGING_ROLES
from epic.billing.models import JobAuthDecision
from epic.jobs.models import Job
from epic.jobs.states import AuthState, JobState, StepState
from epic.worker.wakeup import wake_worker

logger = logging.getLogger(__name__)


def may_decide(job: Job, membership: Membership) -> bool:
    """Admins and owners decide on their team's jobs; only an owner decides on their own."""
    if membership.team_id != job.team_id or membership.role not in MANAGING_ROLES:
        return False
    return job.submitted_by_id != membership.user_id or membership.role == Role.OWNER


def permissions_text(job: Job, membership: Membership) -> str:
    """What the caller may do with the job's authorisation, as the API shows it."""
    return "decide" if may_decide(job, membership) else "view"


@transaction.atomic
def decide(job: Job, membership: Membership, state: str) -> Job:
    """Authorise (the job starts) or reject (the job ends, charged nothing) a pending job."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if not may_decide(job, membership):
        raise exceptions.PermissionDenied("You may not decide on this job's authorisation.")
    # A waiting job that was cancelled has ended: there is nothing left to decide.
    if not job.requires_auth or job.auth_state != AuthState.PENDING or job.finished:
        raise Conflict("This job is not waiting for authorisation.")

    JobAuthDecision.objects.create(job=job, state=state, decided_by=membership.user)
    job.auth_state = state
    job.save(update_fields=["auth_state"])
    if state == AuthState.REJECTED:
        _reject(job, membership)
    transaction.on_commit(wake_worker)
    logger.info("Job %s: %s by %s", job.pk, state.lower(), membership.user)
    return job


def _reject(job: Job, membership: Membership) -> None:
    """End a rejected job: none of its steps run and it is charged nothing."""
    for step in job.steps.filter(state=StepState.PENDING):
        step.move_to(StepState.CANCELLED, scheduler_reason="")
    job.move_to(JobState.REJECTED, status_reason=f"Rejected by {membership.user.username}.")
