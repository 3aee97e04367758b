"""A real `epic serve` on a free loopback port, and pyepic in its own virtualenv."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.servers import epic_command, reachable_home, start_server

REPO = Path(__file__).resolve().parents[2]
PYEPIC_VERSION = "1.0.24"
CAVITY = Path("/usr/share/doc/openfoam-examples/examples/incompressible/icoFoam/cavity/cavity")
FLOW = Path(__file__).with_name("pyepic_flow.py")


@pytest.fixture(scope="session")
def pyepic_python() -> Path:
    """The interpreter of a virtualenv holding pyepic (created once, then reused)."""
    venv = Path(os.environ.get("EPIC_PYEPIC_VENV", REPO / ".venv-pyepic"))
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run(
        [str(python), "-c", "import pyepic"], capture_output=True, check=False
    )
    if installed.returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"pyepic=={PYEPIC_VERSION}"],
            check=True,
        )
    return python


@dataclass
class RunningServer:
    """A server started for a test, with a user's token."""

    api_url: str
    s3_url: str
    home: Path
    token: str
    process: subprocess.Popen


@pytest.fixture
def server():
    """A fresh server with a fresh EPIC_HOME and one user, alice, in team acme."""
    home = reachable_home()
    process, api_url, s3_url = start_server(home)
    epic_command(home, "admin", "user", "create", "alice", "--team", "acme")
    token = epic_command(home, "admin", "token", "create", "alice").strip()
    yield RunningServer(api_url, s3_url, home, token, process)

    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def cavity(tmp_path: Path) -> Path:
    """A fresh copy of OpenFOAM's lid-driven cavity tutorial."""
    if not CAVITY.exists():
        pytest.skip("Debian's openfoam-examples is not installed")
    target = tmp_path / "cavity"
    shutil.copytree(CAVITY, target)
    return target


@pytest.fixture
def run_flow(server: RunningServer, pyepic_python: Path, tmp_path: Path):
    """Run one pyepic scenario against the server and return its observations."""

    def run(scenario: str, case: Path, partitions: int = 1) -> dict:
        started = time.monotonic()
        result = subprocess.run(
            [str(pyepic_python), str(FLOW), scenario, str(case), str(tmp_path), str(partitions)],
            env={
                "PATH": os.environ["PATH"],
                "EPIC_URL": server.api_url,
                "EPIC_TOKEN": server.token,
                "AWS_ENDPOINT_URL_S3": server.s3_url,
            },
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, (
            f"{scenario} failed after {time.monotonic() - started:.1f}s:\n{result.stderr}\n"
            f"server log:\n{(server.home / 'server.log').read_text()[-5000:]}"
        )
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run
