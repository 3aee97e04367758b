"""Each team's Slurm jobs run under its own account: a team's job cannot read another's."""

from __future__ import annotations

import pwd
import subprocess
import time
from pathlib import Path

import pytest

from epic.compute.remote import installation_id
from epic.compute.slurm import accounts
from epic.jobs.models import Job, JobStep
from epic.jobs.states import JobState, StepState
from tests.e2e.servers import EPIC, server_env
from tests.helpers import finished, run_until, script_spec
from tests.slurm.conftest import TEST_ACCOUNT_PREFIX

pytestmark = pytest.mark.django_db(transaction=True)


def _submit(client, upload, queue: str, folder: str, body: str) -> int:
    """Upload run.sh with the given body for the client's user and submit it; the job id."""
    upload(client.user, f"{folder}/run.sh", body)
    spec = script_spec(folder)
    spec["jobs"][0]["cluster"]["queue_code"] = queue
    response = client.post("/api/v2/job/", spec, format="json")
    assert response.status_code == 201, response.json()
    return response.json()[0]["id"]


def _slurm_setting(name: str) -> str:
    """One setting of the running Slurm controller."""
    shown = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    for line in shown.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name:
            return value.strip()
    return ""


def _processes_of(uid: int) -> list[str]:
    """The ids of the processes running as `uid`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                found.append(entry.name)
        except FileNotFoundError:
            continue
    return found


def _account_of_job(job_id: int) -> str:
    """The cluster account that the job's team has."""
    return accounts.account_name(Job.objects.get(pk=job_id).team_id)


def test_a_teams_job_cannot_read_another_teams_running_job(
    alice, bob, upload, slurm_queue, step_io_server, worker
):
    secret_body = "id -un\necho secret-of-acme > secret.txt\necho ready\nsleep 60\n"
    alice_job = _submit(alice, upload, slurm_queue, "case", secret_body)
    run_until(worker, lambda: "ready" in JobStep.objects.get(job_id=alice_job).stdout_tail)
    alice_slurm_id = JobStep.objects.get(job_id=alice_job).local_job_id

    spying = (
        "id -un\n"
        'scratch=$(dirname "$PWD")/..\n'
        'for folder in "$scratch"/*/; do cat "$folder/case/secret.txt" 2>&1; done\n'
        'cat "$scratch"/*.out 2>&1\n'
        f"scontrol write batch_script {alice_slurm_id} - 2>&1\n"
        "sbatch --wrap true 2>&1\n"
        "setsid sleep 300 > /dev/null 2>&1 < /dev/null &\n"
        "echo squeue: $(squeue --noheader --format=%i 2>&1)\n"
    )
    bob_job = _submit(bob, upload, slurm_queue, "spy", spying)
    run_until(worker, finished(bob_job))

    seen = JobStep.objects.get(job_id=bob_job).stdout_tail
    assert seen.splitlines()[0] == _account_of_job(bob_job)
    assert JobStep.objects.get(job_id=alice_job).stdout_tail.startswith(
        _account_of_job(alice_job) + "\n"
    )
    assert "secret-of-acme" not in seen
    assert "/case/secret.txt: Permission denied" in seen
    assert ".out: Permission denied" in seen
    assert "job script retrieval failed" in seen
    assert "#!" not in seen
    assert "Batch job submission failed" in seen
    bob_slurm_id = JobStep.objects.get(job_id=bob_job).local_job_id
    assert seen.splitlines()[-1] == f"squeue: {bob_slurm_id}"
    if _slurm_setting("ProctrackType") == "proctrack/cgroup":
        # Nothing a step started outlives its Slurm job.
        bob_uid = pwd.getpwnam(_account_of_job(bob_job)).pw_uid
        deadline = time.monotonic() + 30
        while _processes_of(bob_uid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_of(bob_uid) == []

    assert alice.post(f"/api/v2/job/{alice_job}/cancel/").status_code == 204
    run_until(worker, finished(alice_job), timeout=60)


def test_a_step_waits_for_its_teams_account_then_runs(
    alice, upload, slurm_queue, step_io_server, worker, settings
):
    settings.EPIC_SLURM_ACCOUNT_PREFIX = f"{TEST_ACCOUNT_PREFIX}late-"
    job_id = _submit(alice, upload, slurm_queue, "case", "id -un\n")
    name = _account_of_job(job_id)

    for _ in range(5):
        worker.run_once()

    step = JobStep.objects.get(job_id=job_id)
    assert step.state == StepState.QUEUED
    assert step.local_job_id is None
    assert f"Waiting for the cluster account {name} of this team" in step.scheduler_reason
    shown = alice.get(f"/api/v2/jobstep/{step.pk}/").json()
    assert name in shown["scheduler_reason"]

    accounts.create(name)
    run_until(worker, finished(job_id))

    step = JobStep.objects.get(job_id=job_id)
    assert Job.objects.get(pk=job_id).state == JobState.COMPLETE
    assert step.stdout_tail == f"{name}\n"
    assert pwd.getpwnam(name).pw_uid == _slurm_job_uid(step.local_job_id)


def _slurm_job_uid(slurm_id: int) -> int:
    """The uid a Slurm job ran under."""
    argv = ["squeue", "--noheader", "--states=all", f"--jobs={slurm_id}", "--format=%U"]
    return int(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def test_cluster_accounts_lists_and_creates_the_teams_accounts(tmp_path):
    home = tmp_path / "home"
    env = server_env(home)

    def epic(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(EPIC), *args], env=env, capture_output=True, text=True, check=False
        )

    assert epic("admin", "user", "create", "zed", "--team", "zeta").returncode == 0
    listed = epic("admin", "cluster", "accounts")
    name = listed.stdout.split("\t")[0]
    assert name.startswith(TEST_ACCOUNT_PREFIX)
    if accounts.exists(name):  # an earlier team of the run had the same id
        subprocess.run(["userdel", "--force", name], check=True)
        listed = epic("admin", "cluster", "accounts")

    team_id = int(name.removeprefix(TEST_ACCOUNT_PREFIX))
    assert (listed.returncode, listed.stdout) == (
        1,
        f"{name}\tmissing\tteam zeta (id {team_id})\n",
    )
    assert "--create" in listed.stderr
    created = epic("admin", "cluster", "accounts", "--create")
    assert (created.returncode, created.stdout) == (
        0,
        f"{name}\tcreated\tteam zeta (id {team_id})\n",
    )
    again = epic("admin", "cluster", "accounts")
    assert (again.returncode, again.stdout) == (0, f"{name}\tpresent\tteam zeta (id {team_id})\n")
    assert pwd.getpwnam(name).pw_shell == "/usr/sbin/nologin"


def test_the_default_account_names_the_installation(settings):
    settings.EPIC_SLURM_ACCOUNT_PREFIX = ""

    assert accounts.account_name(7) == f"epic-{installation_id()}-t7"
    settings.EPIC_ISOLATE_JOBS = False
    assert accounts.account_name(7) is None


def test_a_step_cancelled_while_it_waits_for_its_account_keeps_no_reason(
    alice, upload, slurm_queue, step_io_server, worker, settings
):
    settings.EPIC_SLURM_ACCOUNT_PREFIX = f"{TEST_ACCOUNT_PREFIX}never-"
    job_id = _submit(alice, upload, slurm_queue, "case", "true\n")
    run_until(worker, lambda: JobStep.objects.get(job_id=job_id).scheduler_reason != "")

    assert alice.post(f"/api/v2/job/{job_id}/cancel/").status_code == 204
    run_until(worker, finished(job_id))

    step = JobStep.objects.get(job_id=job_id)
    assert (step.state, step.scheduler_reason) == (StepState.CANCELLED, "")
    assert Job.objects.get(pk=job_id).state == JobState.CANCELLED
