"""Start a real `epic serve` for tests and benchmarks, on free loopback ports."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

EPIC = Path(sys.executable).parent / "epic"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(home: Path) -> dict[str, str]:
    """The environment of a server on its embedded defaults, with all state under `home`."""
    env = {key: value for key, value in os.environ.items() if key != "EPIC_DATABASE_URL"}
    return {**env, "EPIC_HOME": str(home)}


def start_server(
    home: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str, str]:
    """Start `epic serve` on free ports and wait for it to print its URLs.

    The server runs on its embedded defaults unless `env` gives an environment of its own.
    """
    port, s3_port = free_port(), free_port()
    process = subprocess.Popen(
        [str(EPIC), "serve", "--port", str(port), "--s3-port", str(s3_port)],
        env=env or server_env(home),
        stdout=subprocess.PIPE,
        stderr=open(home / "server.log", "ab"),  # noqa: SIM115
        text=True,
    )
    printed = ""
    while "S3 endpoint" not in printed:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"epic serve stopped: {(home / 'server.log').read_text()}")
        printed += line
    api_url = re.search(r"EPIC API:\s+(\S+)", printed).group(1)
    s3_url = re.search(r"EPIC S3 endpoint:\s+(\S+)", printed).group(1)
    return process, api_url, s3_url


def epic_command(home: Path, *args: str) -> str:
    """Run an `epic` command on the state under `home` and return what it printed."""
    return subprocess.run(
        [str(EPIC), *args], env=server_env(home), capture_output=True, text=True, check=True
    ).stdout


def reachable_home() -> Path:
    """A new folder under the system's temp folder (pytest's own is closed to other uids)."""
    home = Path(tempfile.mkdtemp(prefix="epic-test-"))
    home.chmod(0o711)
    return home


def s3_client(session: dict):
    """A boto3 S3 client for the answer of GET /data/session/ (its endpoint and credential)."""
    import boto3

    credential = session["session_token"]
    return boto3.client(
        "s3",
        endpoint_url=session["s3_endpoint_url"],
        region_name=session["aws_region"],
        aws_access_key_id=credential["aws_key_id"],
        aws_secret_access_key=credential["aws_secret_key"],
        aws_session_token=credential["aws_session_token"],
    )
