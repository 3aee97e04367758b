"""Fixtures for the Slurm backend's tests, which run against a real cluster (`.ci/slurm-up`).

Every test here is skipped when `sinfo` is not on PATH or the cluster does not answer. Slurm
commands go through a recording seam, so that tests can count calls and inject failures; the
jobs a test submitted are cancelled when it ends. Steps reach the server over HTTP only: the
API (with its step I/O endpoint) is served on a loopback port for the test, and each test is
an installation of its own (its own signing key, so its own Slurm job names) with a scratch
root of its own, outside EPIC_HOME.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from django.core.wsgi import get_wsgi_application
from django.db.models.signals import post_save
from django.utils import timezone

from epic.accounts.models import Team
from epic.catalog.loader import apply_catalog
from epic.compute.base import RunState, StepLaunch
from epic.compute.slurm import SlurmBackend, accounts
from epic.compute.slurm.commands import CommandResult, partitions, run_command
from epic.jobs.models import JobStep
from epic.jobs.states import StepState
from epic.server import MAX_API_BODY_BYTES, _bind
from epic.worker.launches import launch_for as step_launch
from tests.e2e.conftest import cavity, pyepic_python, server  # noqa: F401 (shared fixtures)
from tests.helpers import script_spec

SLURM_QUEUE = "slurm-test"
# The cluster accounts of the test run's teams: made as teams are created, removed at the end.
# Servers and workers that tests start in processes of their own use the same prefix.
TEST_ACCOUNT_PREFIX = "epic-test-team-"
os.environ["EPIC_SLURM_ACCOUNT_PREFIX"] = TEST_ACCOUNT_PREFIX
# The test queue claims more nodes than the cluster has, so that a step can ask for more.
CLAIMED_NODES = 4


def pytest_configure(config):
    """Register the marker of tests that wait for Slurm's own one-minute time limit."""
    config.addinivalue_line("markers", "slow: waits a minute or more for Slurm")


def _cluster_answers() -> bool:
    """Whether a Slurm controller answers `sinfo` on this machine."""
    if shutil.which("sinfo") is None:
        return False
    try:
        probe = subprocess.run(["sinfo", "--noheader"], capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


CLUSTER_ANSWERS = _cluster_answers()


def pytest_collection_modifyitems(config, items):
    """Skip this folder's tests cleanly where no Slurm cluster answers."""
    if CLUSTER_ANSWERS:
        return
    skip = pytest.mark.skip(reason="no Slurm cluster answers `sinfo` (run .ci/slurm-up)")
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(skip)


class RecordingRunner:
    """The command seam, recording every argv; tests may make sbatch time out after queuing."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.submitted: list[int] = []
        self.sbatch_times_out = False

    def __call__(self, argv: list[str], timeout: float) -> CommandResult:
        self.calls.append(list(argv))
        result = run_command(argv, timeout)
        if argv[0] == "sbatch" and result.returncode == 0:
            self.submitted.append(int(result.stdout.strip().split(";")[0]))
            if self.sbatch_times_out:
                raise subprocess.TimeoutExpired(argv, timeout)
        return result

    def count(self, command: str) -> int:
        """How many times a Slurm command ran."""
        return sum(1 for argv in self.calls if argv[0] == command)


@pytest.fixture(autouse=True)
def installation(settings):
    """A signing key and a node scratch root of the test's own (the root open to every uid)."""
    settings.SECRET_KEY = secrets.token_urlsafe(32)
    scratch = Path(tempfile.mkdtemp(prefix="epic-scratch-"))
    scratch.chmod(0o1777)
    settings.EPIC_SLURM_SCRATCH = str(scratch)
    yield scratch
    shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def remove_test_accounts():
    """Remove the test run's team accounts when it ends (and those an interrupted run left)."""
    yield
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(TEST_ACCOUNT_PREFIX):
            subprocess.run(["userdel", "--force", entry.pw_name], capture_output=True, check=False)


@pytest.fixture(autouse=True)
def team_accounts(settings):
    """Each team created by a test gets its cluster account at once, as an operator would."""
    settings.EPIC_SLURM_ACCOUNT_PREFIX = TEST_ACCOUNT_PREFIX

    def give_account(sender, instance: Team, created: bool, **kwargs) -> None:
        name = accounts.account_name(instance.pk)
        if created and name is not None and not accounts.exists(name):
            accounts.create(name)

    post_save.connect(give_account, sender=Team, dispatch_uid="test-team-accounts")
    yield
    post_save.disconnect(sender=Team, dispatch_uid="test-team-accounts")


class StepIOServer:
    """The API served on a free loopback port by the product's own HTTP server, in a thread."""

    def __init__(self):
        self.server = _bind("127.0.0.1", 0, get_wsgi_application(), MAX_API_BODY_BYTES)
        self.url = f"http://127.0.0.1:{self.server.bind_addr[1]}"
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop answering (what a node then sees is a server it cannot reach)."""
        if self.thread.is_alive():
            self.server.stop()
            self.thread.join(timeout=30)


@pytest.fixture
def step_io_server(transactional_db, settings):
    """The server that the test's steps talk to, set as EPIC_API_URL."""
    served = StepIOServer()
    settings.EPIC_API_URL = served.url
    yield served
    served.stop()


@pytest.fixture
def commands(step_io_server):
    """The recording seam; every job submitted through it is cancelled after the test.

    The step I/O server outlives the cancellation, so that cancelled steps report and end.
    """
    runner = RecordingRunner()
    yield runner
    if runner.submitted:
        subprocess.run(["scancel", *map(str, runner.submitted)], check=False, timeout=30)
        wait_until_ended(runner.submitted)


def wait_until_ended(job_ids: list[int], timeout: float = 60.0) -> None:
    """Wait until none of these Slurm jobs holds cores any more."""
    argv = ["squeue", "--noheader", "--states=CONFIGURING,RUNNING,COMPLETING", "--format=%i"]
    argv.append(f"--jobs={','.join(map(str, job_ids))}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        if not listed.strip():
            return
        time.sleep(0.2)


@pytest.fixture(scope="session")
def node_shape() -> tuple[str, int]:
    """The default partition of the cluster and the CPUs of its nodes."""
    found = partitions(run_command)
    return found[0].name, found[0].cpus_per_node


class RecordingBackend(SlurmBackend):
    """The Slurm backend, with each step's Slurm job id recorded after sbatch, as the worker does.

    Only the job recorded for a step may exchange its bootstrap token for a session secret.
    """

    def start(self, launch):
        """Submit the step, then record its Slurm job id on the step."""
        job_id = super().start(launch)
        JobStep.objects.filter(pk=launch.step_id).update(local_job_id=job_id)
        return job_id


@pytest.fixture
def backend(commands, node_shape) -> SlurmBackend:
    """A Slurm backend on the cluster's first partition, speaking through the seam and
    recording the steps' Slurm job ids."""
    partition, cpus = node_shape
    return RecordingBackend(partition=partition, cores_per_node=cpus, run=commands)


@pytest.fixture
def launch_for(step_io_server, alice, upload, slurm_queue):
    """Make a new step of shell lines, handed to its backend as the worker would; its launch.

    `label` names the step's input folder; every call makes a job and a step of its own, whose
    token the step I/O server accepts.
    """

    def build(label: int, *lines: str, num_tasks: int = 1, hours: int = 1) -> StepLaunch:
        upload(alice.user, f"input-{label}/run.sh", "true\n")
        spec = script_spec(f"input-{label}")
        spec["jobs"][0]["cluster"]["queue_code"] = slurm_queue
        job_id = alice.post("/api/v2/job/", spec, format="json").json()[0]["id"]
        plan = {"commands": [{"argv": ["/bin/bash", "-c", line]} for line in lines]}
        JobStep.objects.filter(job_id=job_id).update(
            state=StepState.RUNNING, plan=plan, num_tasks=num_tasks, max_runtime=hours
        )
        launch = step_launch(JobStep.objects.get(job_id=job_id))
        launch.case_dir.mkdir(parents=True, exist_ok=True)
        return launch

    return build


def wait_for_state(backend, launch, backend_id, state: RunState, timeout: float = 30.0):
    """Refresh until the step reaches `state`, and return its status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backend.refresh([(launch, backend_id)])
        status = backend.status(launch, backend_id)
        if status.state == state:
            return status
        time.sleep(0.2)
    raise AssertionError(f"step {launch.step_id} is still {status} after {timeout}s")


@pytest.fixture
def slurm_queue(alice, node_shape) -> str:
    """A Slurm queue on the cluster's first partition, offering the script application."""
    partition, cpus = node_shape
    apply_catalog(
        {
            "clusters": [{"name": "slurm-test", "backend": "slurm"}],
            "queues": [
                {
                    "queue_code": SLURM_QUEUE,
                    "cluster": "slurm-test",
                    "partition": partition,
                    "max_allocation": cpus * CLAIMED_NODES,
                    "cores_per_cpu": cpus,
                    "node_count": CLAIMED_NODES,
                }
            ],
            "applications": [
                {
                    "product_name": "Script",
                    "versions": [
                        {
                            "app_code": "script",
                            "version": "1",
                            "driver": "script",
                            "queues": ["local", SLURM_QUEUE],
                        }
                    ],
                }
            ],
        }
    )
    return SLURM_QUEUE


@pytest.fixture
def submit_to_slurm(alice, upload, slurm_queue, step_io_server):
    """Upload run.sh with the given body and submit it to the Slurm queue; return the job id."""

    def submit(folder: str, body: str, partitions: int = 1) -> int:
        upload(alice.user, f"{folder}/run.sh", body)
        spec = script_spec(folder, partitions=partitions)
        spec["jobs"][0]["cluster"]["queue_code"] = slurm_queue
        response = alice.post("/api/v2/job/", spec, format="json")
        assert response.status_code == 201, response.json()
        return response.json()[0]["id"]

    return submit


class NodeHold:
    """A Slurm job that takes every core of the node until released."""

    def __init__(self, cpus: int):
        argv = ["sbatch", "--parsable", f"--ntasks={cpus}", "--job-name=epic-test-hold"]
        printed = subprocess.run(
            [*argv, "--output=/dev/null", "--wrap=sleep 600"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.job_id = int(printed.strip().split(";")[0])
        self.released_at = None

    def wait_running(self, timeout: float = 60.0) -> None:
        """Wait until the hold runs, so that jobs submitted after it must wait."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            argv = ["squeue", "--noheader", f"--jobs={self.job_id}", "--format=%T"]
            if subprocess.run(argv, capture_output=True, text=True).stdout.strip() == "RUNNING":
                return
            time.sleep(0.2)
        raise AssertionError(f"the hold job {self.job_id} did not start")

    def release(self) -> None:
        """Cancel the hold, and note when."""
        if self.released_at is None:
            subprocess.run(["scancel", str(self.job_id)], check=False, timeout=30)
            self.released_at = timezone.now()


@pytest.fixture
def hold_the_node(node_shape):
    """Every core of the node taken by a job of the test's, released by the test or after it."""
    hold = NodeHold(node_shape[1])
    try:
        hold.wait_running()
        yield hold
    finally:
        hold.release()
