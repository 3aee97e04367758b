"""Job authorisation end to end: pyepic submits, an admin decides through epiccore, jobs obey."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.e2e.servers import epic_command

pytestmark = pytest.mark.e2e

# Long enough for several passes of the server's worker, which polls every 0.25 s.
WORKER_PASSES_SECONDS = 2

# The client side, run by pyepic's own interpreter: `python -c DRIVER ACTION [ARGUMENTS]`
# with EPIC_URL and EPIC_TOKEN in the environment; it prints one JSON value.
DRIVER = """
import json, os, sys, time

import epiccore
from epiccore.models import JobAuthStatus
from pyepic import EPICClient
from pyepic.applications.base import Job, JobStep

client = EPICClient(os.environ["EPIC_TOKEN"], connection_url=os.environ["EPIC_URL"])
action, arguments = sys.argv[1], sys.argv[2:]


def details(job_id):
    job = client.job.get_details(job_id)
    steps = [{"status": s.status, "started": s.start is not None} for s in job.job_steps]
    return {
        "status": job.status,
        "finished": job.finished,
        "requires_auth": job.requires_auth,
        "cost": job.cost,
        "steps": steps,
    }


def submit(script):
    client.data.upload_file(script, "epic://case/run.sh")
    job = Job("script", "needs a decision", "epic://case/")
    step = JobStep()
    step.step_name = "run"
    job.add_step(step)
    spec = job.get_job_create_spec("local")
    spec.jobs[0].app_options = {"script": "run.sh"}
    return {"id": client.job.submit(spec)[0].id}


def wait(job_id):
    deadline = time.monotonic() + 120
    while not client.job.get_details(job_id).finished and time.monotonic() < deadline:
        time.sleep(0.5)
    return details(job_id)


with epiccore.ApiClient(client.job.configuration) as api:
    answers = {
        "submit": lambda: submit(arguments[0]),
        "details": lambda: details(int(arguments[0])),
        "wait": lambda: wait(int(arguments[0])),
        "waiting": lambda: sorted(
            row.job.id for row in epiccore.JobauthApi(api).jobauth_list().results
        ),
        "decide": lambda: epiccore.JobauthApi(api)
        .jobauth_update(arguments[0], JobAuthStatus(state=arguments[1]))
        .state,
        "rule": lambda: epiccore.BillingApi(api).billing_limits_list().limits[0].jobauth.to_dict(),
    }
    print(json.dumps(answers[action]()))
"""


@pytest.fixture
def admin_token(server) -> str:
    """A token of carol, an admin of alice's team acme."""
    epic_command(
        server.home, "admin", "user", "create", "carol", "--team", "acme", "--role", "admin"
    )
    return epic_command(server.home, "admin", "token", "create", "carol").strip()


@pytest.fixture
def pyepic(server, pyepic_python):
    """Run one action of the pyepic driver as alice (or with another token); answer its JSON."""

    def run(*arguments: str, token: str | None = None):
        result = subprocess.run(
            [str(pyepic_python), "-c", DRIVER, *arguments],
            env={
                "PATH": os.environ["PATH"],
                "EPIC_URL": server.api_url,
                "EPIC_TOKEN": token or server.token,
                "AWS_ENDPOINT_URL_S3": server.s3_url,
                "AWS_EC2_METADATA_DISABLED": "true",
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, (
            f"{arguments} failed:\n{result.stderr}\n"
            f"server log:\n{(server.home / 'server.log').read_text()[-5000:]}"
        )
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


def test_job_waits_for_an_admin_and_runs_only_when_authorised(
    server, pyepic, admin_token, tmp_path
):
    epic_command(
        server.home, "admin", "billing", "team", "acme", "--jobauth", "yes",
        "--jobauth-threshold", "0",
    )  # fmt: skip
    script = tmp_path / "run.sh"
    script.write_text("echo authorised\n")

    authorised = pyepic("submit", str(script))["id"]
    rejected = pyepic("submit", str(script))["id"]
    time.sleep(WORKER_PASSES_SECONDS)
    waiting = pyepic("details", str(authorised))
    listed = pyepic("waiting", token=admin_token)
    decisions = [
        pyepic("decide", str(authorised), "AUTHORISED", token=admin_token),
        pyepic("decide", str(rejected), "REJECTED", token=admin_token),
    ]
    completed = pyepic("wait", str(authorised))
    time.sleep(WORKER_PASSES_SECONDS)
    ended = pyepic("wait", str(rejected))

    assert pyepic("rule") == {
        "enabled": True,
        "all_jobs": False,
        "cost_threshold": {"amount": 0.0, "currency": "GBP", "currency_symbol": "£"},
        "description_str": "Authorise jobs over £0.00",
    }
    # The default script job: 1 core x 1 h x 0.05.
    assert waiting == {
        "status": "Pending",
        "finished": False,
        "requires_auth": True,
        "cost": "£0.05",
        "steps": [{"status": "Pending", "started": False}],
    }
    assert listed == sorted([authorised, rejected])
    assert decisions == ["AUTHORISED", "REJECTED"]
    assert completed["status"] == "Job Complete"
    assert completed["steps"] == [{"status": "Step Complete", "started": True}]
    assert ended == {
        "status": "Job Rejected",
        "finished": True,
        "requires_auth": True,
        "cost": "£0.00",
        "steps": [{"status": "Step Cancelled", "started": False}],
    }
