"""A job's steps go to Slurm at once, chained by afterok or afterany dependencies."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest

from epic.data.paths import user_prefix
from epic.data.services import object_store
from epic.jobs.models import Job, JobStep
from epic.jobs.states import JobState, StepState
from tests.helpers import finished, run_until

pytestmark = pytest.mark.django_db(transaction=True)


def add_steps(job_id: int, *steps: tuple[str, bool]) -> None:
    """Give a submitted script job more steps: (bash line, run_if_previous_step_fails) each."""
    first = JobStep.objects.get(job_id=job_id, index=0)
    for index, (line, after_failure) in enumerate(steps, start=1):
        JobStep.objects.create(
            job_id=job_id,
            index=index,
            step_name=f"step{index}",
            run_if_previous_step_fails=after_failure,
            max_runtime=1,
            plan={**first.plan, "commands": [{"argv": ["/bin/bash", "-c", line]}]},
        )


def steps_of(job_id: int) -> list[JobStep]:
    """The job's steps in order."""
    return list(JobStep.objects.filter(job_id=job_id).order_by("index"))


def squeue_reasons(job_ids: list[int]) -> dict[int, str]:
    """Slurm's pending reason of each job it still remembers, by id."""
    argv = ["squeue", "--noheader", "--states=all", f"--jobs={','.join(map(str, job_ids))}"]
    printed = subprocess.run(
        [*argv, "--Format=JobID:|,State:|,Reason:|"], capture_output=True, text=True
    ).stdout
    reasons = {}
    for line in printed.splitlines():
        job_id, state, reason = line.strip().removesuffix("|").split("|")
        reasons[int(job_id)] = f"{state.strip()}:{reason.strip()}"
    return reasons


def all_submitted(job_id: int):
    """A predicate: every step of the job is in Slurm's hands."""
    return lambda: all(step.local_job_id for step in steps_of(job_id))


def test_every_step_is_submitted_at_once_and_waits_on_the_one_before(submit_to_slurm, worker):
    job_id = submit_to_slurm("chain", "sleep 3; echo first >> trail\n")
    add_steps(job_id, ("echo second >> trail", False), ("echo third >> trail", False))

    run_until(worker, all_submitted(job_id))
    _, second, third = steps_of(job_id)
    waiting = squeue_reasons([second.local_job_id, third.local_job_id])
    run_until(worker, finished(job_id), timeout=60)

    assert waiting == {
        second.local_job_id: "PENDING:Dependency",
        third.local_job_id: "PENDING:Dependency",
    }
    assert [step.state for step in steps_of(job_id)] == [StepState.COMPLETE] * 3
    assert Job.objects.get(pk=job_id).state == JobState.COMPLETE


def test_a_failed_step_skips_the_next_unless_it_runs_after_failures(
    alice, submit_to_slurm, worker
):
    job_id = submit_to_slurm("after-failure", "echo ran first >> trail; exit 3\n")
    add_steps(job_id, ("echo ran second >> trail", False), ("echo ran third >> trail", True))

    run_until(worker, finished(job_id), timeout=60)

    first, second, third = steps_of(job_id)
    assert (first.state, first.exit_code) == (StepState.FAILED, 3)
    assert (second.state, second.start, second.exit_code) == (StepState.SKIPPED, None, None)
    assert (third.state, third.exit_code) == (StepState.COMPLETE, 0)
    with object_store().open(user_prefix(alice.user) + "after-failure/trail") as stream:
        assert stream.read() == b"ran first\nran third\n"
    assert Job.objects.get(pk=job_id).state == JobState.FAILED


def test_steps_after_a_failure_that_must_not_run_leave_nothing_in_slurm(submit_to_slurm, worker):
    job_id = submit_to_slurm("no-followers", "sleep 2; exit 1\n")
    add_steps(job_id, ("echo never", False), ("echo never either", False))

    run_until(worker, all_submitted(job_id))
    followers = [step.local_job_id for step in steps_of(job_id)[1:]]
    run_until(worker, finished(job_id), timeout=60)

    assert [step.state for step in steps_of(job_id)] == [
        StepState.FAILED,
        StepState.SKIPPED,
        StepState.SKIPPED,
    ]
    assert not any(reason.startswith("PENDING") for reason in squeue_reasons(followers).values())


def test_time_waiting_in_slurm_is_not_counted_as_run_time(submit_to_slurm, worker, hold_the_node):
    job_id = submit_to_slurm("held", "echo ran\n")

    run_until(worker, lambda: steps_of(job_id)[0].scheduler_reason in {"Resources", "Priority"})
    held = steps_of(job_id)[0]
    hold_the_node.release()
    run_until(worker, finished(job_id), timeout=60)
    ran = steps_of(job_id)[0]

    assert (held.state, held.start) == (StepState.SUBMITTED, None)
    # Slurm's times are whole seconds.
    assert ran.start >= hold_the_node.released_at - timedelta(seconds=1)
    assert (ran.end - ran.start).total_seconds() < 30


def test_a_step_cancelled_before_its_job_starts_skips_the_steps_after_it(
    alice, submit_to_slurm, worker
):
    job_id = submit_to_slurm("cancelled-first", "echo ran >> trail\n")
    add_steps(job_id, ("echo ran second >> trail", False), ("echo ran third >> trail", False))
    first = steps_of(job_id)[0]

    assert alice.post(f"/api/v2/jobstep/{first.pk}/cancel/").status_code == 204
    run_until(worker, finished(job_id), timeout=60)

    steps = steps_of(job_id)
    assert [step.state for step in steps] == [StepState.CANCELLED, *[StepState.SKIPPED] * 2]
    assert [step.local_job_id for step in steps] == [None] * 3
    assert Job.objects.get(pk=job_id).outcome == JobState.CANCELLED
