"""pyepic runs OpenFOAM's cavity end to end on a Slurm queue of a real server."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from epic.compute.remote import installation_id_of
from tests.e2e.conftest import FLOW
from tests.e2e.servers import epic_command

pytestmark = [pytest.mark.e2e, pytest.mark.openfoam]

QUEUE = "slurm-e2e"


@pytest.fixture
def slurm_catalog(server, tmp_path, node_shape) -> Path:
    """Load a catalog file that puts OpenFOAM on a Slurm queue of the running server."""
    partition, cpus = node_shape
    path = tmp_path / "slurm.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            clusters:
              - name: slurm-e2e
                backend: slurm
            queues:
              - queue_code: {QUEUE}
                cluster: slurm-e2e
                partition: {partition}
                max_allocation: {cpus}
                cores_per_cpu: {cpus}
            applications:
              - product_name: OpenFOAM
                versions:
                  - app_code: openfoam-1912
                    version: "1912"
                    driver: openfoam
                    queues: [local, {QUEUE}]
                    environment: {{WM_PROJECT_DIR: /usr/share/openfoam}}
            """
        )
    )
    epic_command(server.home, "admin", "catalog", "load", str(path))
    # The team's steps run under its own cluster account, made here as an operator would.
    epic_command(server.home, "admin", "cluster", "accounts", "--create")
    return path


@pytest.mark.parametrize("partitions", [1, 2])
def test_cavity_runs_on_slurm_through_pyepic(
    server, pyepic_python, cavity, slurm_catalog, tmp_path, partitions
):
    seen = _run_flow(server, pyepic_python, cavity, tmp_path, partitions)

    job = seen["job"]
    assert QUEUE in seen["quote_queues"]
    assert job["status"] == "Job Complete"
    expected_steps = ["blockMesh", "solver"]
    if partitions > 1:
        expected_steps = ["blockMesh", "decomposePar", "solver", "reconstructPar"]
    assert [step["name"] for step in job["steps"]] == expected_steps
    assert {step["exit_code"] for step in job["steps"]} == {0}
    assert "End" in next(step for step in job["steps"] if step["name"] == "solver")["stdout_tail"]
    assert seen["residual_lengths"] == {"time": 100, "Ux": 100, "Uy": 100, "p": 100}
    assert "0.5/U" in seen["downloaded"]
    # Each step ran as exactly one Slurm job (the fresh server's steps are numbered from 1).
    installation = _installation_of(server.home)
    steps = range(1, len(expected_steps) + 1)
    assert _slurm_job_names_of(installation) == [f"epic-{installation}-step-{n}" for n in steps]


def _run_flow(running, python: Path, case: Path, work: Path, partitions: int) -> dict:
    """Run pyepic's `run` scenario on the Slurm queue and return its observations."""
    result = subprocess.run(
        [str(python), str(FLOW), "run", str(case), str(work), str(partitions), QUEUE],
        env={
            "PATH": os.environ["PATH"],
            "EPIC_URL": running.api_url,
            "EPIC_TOKEN": running.token,
            "AWS_ENDPOINT_URL_S3": running.s3_url,
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    log = (running.home / "server.log").read_text()[-5000:]
    assert result.returncode == 0, f"{result.stderr}\nserver log:\n{log}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def _installation_of(home: Path) -> str:
    """The installation id of the server whose state is under `home` (from its signing key)."""
    key = os.environ.get("EPIC_SECRET_KEY") or (home / "secret_key").read_text().strip()
    return installation_id_of(key)


def _slurm_job_names_of(installation: str) -> list[str]:
    """The names of the Slurm jobs of an installation, in submission order."""
    argv = ["squeue", "--noheader", "--states=all", "--format=%i|%j"]
    lines = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [line.split("|", 1) for line in lines]
    prefix = f"epic-{installation}-"
    ours = [(int(job_id), name) for job_id, name in rows if name.startswith(prefix)]
    return [name for _, name in sorted(ours)]
