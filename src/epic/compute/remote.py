"""What a step running on a compute node that shares no disk with the server gets from it.

Such a step reaches the server only through the step I/O endpoint (`epic.worker.stepio`).
This module is the contract both sides of the server keep: the step's bootstrap token, the
installation id that tags its scheduler jobs, the bundle a backend prepares in the server-side
step folder for the endpoint to serve, and the names of the files the endpoint writes there,
which are the ones the worker already reads (stdout, stderr, exit).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from pathlib import Path

from django.conf import settings

from epic.compute.base import StepLaunch
from epic.compute.local import runner_spec, script_paths

# The file of the server-side step folder that holds what the node downloads to run the step:
# its runner spec and the application's scripts, by the names they get on the node (the runner
# itself, the same for every step, is added when the bundle is served).
BUNDLE_FILE = "bundle.json"
# Where steps submitted by earlier versions keep their bundle: a folder of those files.
BUNDLE_FOLDER = "bundle"
RUNNER_FILE = "runner.py"
# The pushed log streams and the server-side step folder files they are appended to.
LOG_FILES = {"stdout": "stdout", "stderr": "stderr", "scheduler": "scheduler.out"}
EXIT_FILE = "exit"
# The scheduler's id of the job that runs the step, recorded at the node's first contact.
SCHEDULER_JOB_FILE = "scheduler_job_id"
# The digest of the session secret the node's bootstrap token was exchanged for.
SESSION_FILE = "session"
# The case folder's name inside the node's own scratch folder.
NODE_CASE = "case"
# Keys of the runner spec that name files of the node's scratch folder (relative in the bundle).
NODE_PATH_KEYS = (
    "case_dir",
    "stdout",
    "stderr",
    "exit_file",
    "start_script",
    "stop_script",
    "environment_script",
)


def step_token(job_id: int, step_id: int) -> str:
    """A step's one-time bootstrap token: an HMAC of its ids under the installation's key."""
    message = f"epic-step-io:{job_id}:{step_id}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def installation_id() -> str:
    """Eight hex characters that tell this installation's scheduler jobs from any other's."""
    return installation_id_of(settings.SECRET_KEY)


def installation_id_of(secret_key: str) -> str:
    """The installation id that goes with a signing key."""
    digest = hmac.new(secret_key.encode(), b"epic-installation", hashlib.sha256)
    return digest.hexdigest()[:8]


def write_bundle(launch: StepLaunch, launcher: list[str]) -> Path:
    """Write the runner's spec and the application's scripts for a node to download.

    They go into one file, as few files as possible being made per step. Every path in the
    spec is relative to the node's scratch folder, and HOME and PWD name the node's case
    folder: the wrapper on the node makes them absolute. No server path goes in.
    """
    on_node = replace(launch, case_dir=Path(NODE_CASE), step_dir=Path("."))
    spec = runner_spec(on_node, launcher, reap_own_uid=False)
    files = {"spec.json": json.dumps(spec)}
    for name, path in script_paths(on_node).items():
        files[path] = launch.scripts[name]
    bundle = launch.step_dir / BUNDLE_FILE
    bundle.write_text(json.dumps(files))
    return bundle


def recorded_scheduler_job(step_dir: Path) -> int | None:
    """The scheduler job id a node reported for the step at its first contact, if any."""
    try:
        return int((step_dir / SCHEDULER_JOB_FILE).read_text())
    except (OSError, ValueError):
        return None
