"""Fixtures for the Slurm backend's tests, which run against a real cluster (`.ci/slurm-up`).

Every test here is skipped when `sinfo` is not on PATH or the cluster does not answer. Slurm
commands go through a recording seam, so that tests can count calls and inject failures; the
jobs a test submitted are cancelled when it ends.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings

from epic.catalog.loader import apply_catalog
from epic.compute.base import RunState, StepLaunch
from epic.compute.slurm import SlurmBackend
from epic.compute.slurm.commands import CommandResult, partitions, run_command
from tests.e2e.conftest import cavity, pyepic_python, server  # noqa: F401 (shared fixtures)
from tests.helpers import script_spec

SLURM_QUEUE = "slurm-test"
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


@pytest.fixture
def commands():
    """The recording seam; every job submitted through it is cancelled after the test."""
    runner = RecordingRunner()
    yield runner
    if runner.submitted:
        subprocess.run(["scancel", *map(str, runner.submitted)], check=False, timeout=30)


@pytest.fixture(scope="session")
def node_shape() -> tuple[str, int]:
    """The default partition of the cluster and the CPUs of its nodes."""
    found = partitions(run_command)
    return found[0].name, found[0].cpus_per_node


@pytest.fixture
def backend(commands, node_shape) -> SlurmBackend:
    """A Slurm backend on the cluster's first partition, speaking through the seam."""
    partition, cpus = node_shape
    return SlurmBackend(partition=partition, cores_per_node=cpus, run=commands)


@pytest.fixture
def launch_for(isolated_home):
    """Build a StepLaunch of shell lines, with its folders under the test's EPIC_HOME."""

    def build(step_id: int, *lines: str, num_tasks: int = 1, hours: int = 1) -> StepLaunch:
        job_dir = Path(settings.EPIC_WORK_ROOT) / f"job-{step_id}"
        (job_dir / "case").mkdir(parents=True, exist_ok=True)
        commands = [{"argv": ["/bin/bash", "-c", line]} for line in lines]
        return StepLaunch(
            job_id=step_id,
            step_id=step_id,
            case_dir=job_dir / "case",
            step_dir=job_dir / "steps" / str(step_id),
            plan={"commands": commands},
            num_tasks=num_tasks,
            threads_per_task=1,
            max_runtime_hours=hours,
            environment={},
        )

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
def submit_to_slurm(alice, upload, slurm_queue):
    """Upload run.sh with the given body and submit it to the Slurm queue; return the job id."""

    def submit(folder: str, body: str, partitions: int = 1) -> int:
        upload(alice.user, f"{folder}/run.sh", body)
        spec = script_spec(folder, partitions=partitions)
        spec["jobs"][0]["cluster"]["queue_code"] = slurm_queue
        response = alice.post("/api/v2/job/", spec, format="json")
        assert response.status_code == 201, response.json()
        return response.json()[0]["id"]

    return submit
