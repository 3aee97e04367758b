"""A job runs under a uid of its own: it cannot read the server's state or other users' data,
and nothing it starts outlives it."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from epic.compute.isolation import UnreachableHomeError, open_home
from epic.data.paths import user_prefix
from epic.data.services import object_store
from epic.jobs.models import Job
from epic.jobs.states import JobState
from tests.conftest import client_for
from tests.e2e.servers import reachable_home
from tests.helpers import finished, run_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(os.geteuid() != 0, reason="jobs get their own uid only under root"),
]


def read_object(user, key: str) -> str:
    """The content of an object in a user's data store."""
    with object_store().open(user_prefix(user) + key) as stream:
        return stream.read().decode()


def test_job_runs_under_its_own_uid(alice, submit_script, worker):
    job_id = submit_script("case", "id -u > uid.txt\n")

    run_until(worker, finished(job_id))

    assert read_object(alice.user, "case/uid.txt") == f"{settings.EPIC_JOB_UID_BASE + job_id}\n"


def test_job_cannot_read_other_users_data_or_server_state(alice, upload, submit_script, worker):
    bob = client_for("bob", "globex")
    upload(bob.user, "secret/plans.txt", "bob's secret\n")
    other = settings.EPIC_DATA_ROOT / "objects" / user_prefix(bob.user) / "secret" / "plans.txt"
    script = (
        f"cat {other} > stolen.txt 2>&1; echo $? > cat-status.txt\n"
        f"ls {settings.EPIC_DATA_ROOT} > listing.txt 2>&1; echo $? >> cat-status.txt\n"
    )
    job_id = submit_script("case", script)

    run_until(worker, finished(job_id))

    assert read_object(alice.user, "case/cat-status.txt") == "1\n2\n"
    assert "bob's secret" not in read_object(alice.user, "case/stolen.txt")
    assert "Permission denied" in read_object(alice.user, "case/stolen.txt")


def test_processes_a_job_leaves_behind_are_killed(alice, submit_script, worker):
    job_id = submit_script("case", "sleep 300 &\necho $! > pid.txt\n")

    run_until(worker, finished(job_id))

    pid = int(read_object(alice.user, "case/pid.txt"))
    assert process_state(pid) in (None, "Z")


def process_state(pid: int) -> str | None:
    """The state letter of a process (Z for a zombie awaiting its reaper), or None if gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("State:"):
                    return line.split()[1]
    except FileNotFoundError:
        return None
    return None


def test_links_out_of_the_case_folder_are_not_uploaded(alice, submit_script, worker):
    script = "ln -s /etc/passwd passwd-link\nln /etc/hostname hostname-link 2>/dev/null\ntrue\n"
    job_id = submit_script("case", script)

    run_until(worker, finished(job_id))

    assert Job.objects.get(pk=job_id).state == JobState.COMPLETE
    assert object_store().head(user_prefix(alice.user) + "case/passwd-link") is None
    assert object_store().head(user_prefix(alice.user) + "case/hostname-link") is None


def test_result_names_the_store_refuses_are_reported_not_retried(alice, submit_script, worker):
    job_id = submit_script("case", "echo x > 'a\\b.txt'\necho ok > good.txt\n")

    run_until(worker, finished(job_id))

    job = Job.objects.get(pk=job_id)
    assert job.state == JobState.COMPLETE
    assert job.status_reason.startswith("Not uploaded: a\\b.txt")
    assert read_object(alice.user, "case/good.txt") == "ok\n"


def test_a_new_home_is_opened_for_job_uids_to_pass_through(settings):
    parent = reachable_home()
    settings.EPIC_HOME = parent / "made by the server"
    settings.EPIC_WORK_ROOT = settings.EPIC_HOME / "work"
    old_umask = os.umask(0o077)  # as `epic` runs
    try:
        settings.EPIC_HOME.mkdir(parents=True)
        open_home()
    finally:
        os.umask(old_umask)

    for folder in (settings.EPIC_HOME, settings.EPIC_WORK_ROOT):
        assert folder.stat().st_mode & 0o777 == 0o711


def test_a_home_under_closed_folders_is_refused_naming_them_all(settings):
    parent = reachable_home()
    outer = parent / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    outer.chmod(0o700)
    inner.chmod(0o700)
    settings.EPIC_HOME = inner / "home"
    settings.EPIC_WORK_ROOT = settings.EPIC_HOME / "work"

    with pytest.raises(UnreachableHomeError) as refusal:
        open_home()

    assert f"cannot pass through {outer} {inner}:" in str(refusal.value)
