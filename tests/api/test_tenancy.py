"""Two teams, each holding every kind of object: neither sees, changes or learns of the other's."""

import pytest

from epic.accounts.models import Role
from epic.billing.models import TeamBilling
from epic.data.files import sync_index
from epic.data.models import DataFile, DataFolder
from epic.jobs.models import Job, JobStep, LogRefresh
from epic.licences.services import create_licence
from epic.projects.services import create_project
from tests.conftest import client_for
from tests.helpers import script_spec

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme_objects(alice, upload):
    """Every kind of object, owned by team acme (alice's), seen by an acme owner."""
    owner = client_for("olga", "acme", role=Role.OWNER)
    billing = TeamBilling.of(alice.user.memberships.get().team)
    billing.jobauth_enabled, billing.jobauth_all_jobs = True, True
    billing.save()
    upload(alice.user, "case/run.sh", "true\n")
    job_id = alice.post("/api/v2/job/", script_spec("case"), format="json").json()[0]["id"]
    step = JobStep.objects.get(job_id=job_id)
    refresh = alice.post("/api/v2/jobrefresh/", {"job_step": step.pk}, format="json").json()
    sync_index(alice.user)
    team = alice.user.memberships.get().team
    licence = create_licence(team, "solver", [{"variable_name": "LICENSE_KEY", "value": "k-1"}])
    return {
        "job": job_id,
        "step": step.pk,
        "refresh": refresh["id"],
        "project": create_project("P-1", "acme").pk,
        "licence": str(licence.pk),
        "file": DataFile.objects.get(user=alice.user).pk,
        "folder": DataFolder.objects.get(user=alice.user).pk,
        "team": team.pk,
        "owner": owner,
    }


def reads(ids: dict) -> list[str]:
    """Every read of one of acme's objects."""
    return [
        f"/api/v2/job/{ids['job']}/",
        f"/api/v2/job/{ids['job']}/residuals/",
        f"/api/v2/job/{ids['job']}/auth/",
        f"/api/v2/jobauth/{ids['job']}/",
        f"/api/v2/jobstep/{ids['step']}/",
        f"/api/v2/jobstep/{ids['step']}/logs/",
        f"/api/v2/jobrefresh/{ids['refresh']}/",
        f"/api/v2/projects/{ids['project']}/",
        f"/api/v2/licenses/{ids['licence']}/",
        f"/api/v2/data/file/{ids['file']}/",
        f"/api/v2/data/folder/{ids['folder']}/",
        f"/api/v2/teams/{ids['team']}/",
    ]


LISTS = [
    "/api/v2/job/",
    "/api/v2/jobstep/",
    "/api/v2/jobauth/",
    "/api/v2/projects/",
    "/api/v2/licenses/",
    "/api/v2/data/file/",
    "/api/v2/data/folder/",
]


def test_every_read_of_another_teams_object_is_not_found(acme_objects):
    intruder = client_for("ivan", "globex", role=Role.OWNER)

    answers = {path: intruder.get(path).status_code for path in reads(acme_objects)}

    assert set(answers.values()) == {404}


def test_lists_never_show_another_teams_objects(acme_objects):
    intruder = client_for("ivan", "globex", role=Role.OWNER)

    counts = {path: intruder.get(path).json()["count"] for path in LISTS}

    assert counts == dict.fromkeys(LISTS, 0)


def test_every_change_to_another_teams_object_is_not_found_and_changes_nothing(acme_objects):
    intruder = client_for("ivan", "globex", role=Role.OWNER)
    ids = acme_objects
    changes = [
        ("patch", f"/api/v2/job/{ids['job']}/", {"config": {"upload": []}}),
        ("post", f"/api/v2/job/{ids['job']}/cancel/", {}),
        ("put", f"/api/v2/job/{ids['job']}/auth/", {"state": "AUTHORISED"}),
        ("put", f"/api/v2/jobauth/{ids['job']}/", {"state": "REJECTED"}),
        ("post", f"/api/v2/jobstep/{ids['step']}/cancel/", {}),
        ("patch", f"/api/v2/projects/{ids['project']}/", {"closed": True}),
        ("delete", f"/api/v2/licenses/{ids['licence']}/", None),
    ]

    answers = [
        getattr(intruder, method)(path, body, format="json").status_code
        for method, path, body in changes
    ]

    assert set(answers) == {404}
    job = Job.objects.get(pk=ids["job"])
    assert (job.cancel_requested, job.auth_state, job.config["upload"]) == (
        False,
        "PENDING",
        ["complete", "failure", "cancel"],
    )
    assert (
        intruder.post("/api/v2/jobrefresh/", {"job_step": ids["step"]}, format="json").status_code
        == 400
    )
    assert LogRefresh.objects.count() == 1
    assert ids["owner"].get(f"/api/v2/licenses/{ids['licence']}/").status_code == 200


def test_a_user_may_not_do_what_admins_do(acme_objects, alice):
    ids = acme_objects

    assert (
        alice.patch(
            f"/api/v2/projects/{ids['project']}/", {"closed": True}, format="json"
        ).status_code
        == 403
    )
    assert (
        alice.put(
            f"/api/v2/jobauth/{ids['job']}/", {"state": "AUTHORISED"}, format="json"
        ).status_code
        == 403
    )
    assert alice.delete(f"/api/v2/licenses/{ids['licence']}/").status_code == 403
    assert (
        alice.get(f"/api/v2/licenses/{ids['licence']}/").json()["environment"][0]["value"] != "k-1"
    )


def test_an_owner_may_do_what_admins_do(acme_objects):
    owner, ids = acme_objects["owner"], acme_objects

    assert (
        owner.patch(
            f"/api/v2/projects/{ids['project']}/", {"closed": True}, format="json"
        ).status_code
        == 200
    )
    assert (
        owner.put(
            f"/api/v2/jobauth/{ids['job']}/", {"state": "AUTHORISED"}, format="json"
        ).status_code
        == 200
    )
    assert (
        owner.get(f"/api/v2/licenses/{ids['licence']}/").json()["environment"][0]["value"] == "k-1"
    )
    assert owner.delete(f"/api/v2/licenses/{ids['licence']}/").status_code == 204
