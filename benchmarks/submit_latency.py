"""Time from job submission to its first step running, on a fresh embedded server.

Submits 20 one-step script jobs one after another through the API and prints the median and
the worst of (step start - job submitted_at), both recorded by the server. Target: median
under 1 s.
"""

from __future__ import annotations

import json
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.servers import epic_command, s3_client, start_server

JOBS = 20


def call(api_url: str, token: str, method: str, path: str, body=None):
    """One JSON request to the API."""
    request = urllib.request.Request(
        api_url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def upload_script(api_url: str, token: str) -> None:
    """Put a trivial run.sh into epic://bench/ through the S3 endpoint."""
    session = call(api_url, token, "GET", "/data/session/")
    s3_client(session).put_object(
        Bucket=session["s3_location"], Key=session["s3_obj_key"] + "bench/run.sh", Body=b"true\n"
    )


def job_spec() -> dict:
    """A one-step script job."""
    return {
        "name": "latency",
        "config": {"upload": []},
        "jobs": [
            {
                "name": "latency",
                "spec": {
                    "app_code": "script",
                    "tasks": [{"reference": "run", "partitions": 1, "runtime": 1}],
                },
                "app_options": {"script": "run.sh"},
                "cluster": {"queue_code": "local"},
                "input_data": {"path": "epic://bench/"},
            }
        ],
    }


def measure(api_url: str, token: str) -> list[float]:
    """Submit JOBS jobs one by one; return each one's seconds from submission to start."""
    delays = []
    for _ in range(JOBS):
        job = call(api_url, token, "POST", "/job/", job_spec())[0]
        while not (job := call(api_url, token, "GET", f"/job/{job['id']}/"))["finished"]:
            time.sleep(0.05)
        step = job["job_steps"][0]
        submitted = datetime.fromisoformat(job["submitted_at"])
        delays.append((datetime.fromisoformat(step["start"]) - submitted).total_seconds())
    return delays


def main() -> None:
    """Start a server, measure, print the figures."""
    with tempfile.TemporaryDirectory() as home:
        # Jobs run under their own uids (as root) and must be able to pass through EPIC_HOME.
        Path(home).chmod(0o711)
        process, api_url, _ = start_server(Path(home))
        try:
            epic_command(Path(home), "admin", "user", "create", "bench", "--team", "bench")
            token = epic_command(Path(home), "admin", "token", "create", "bench").strip()
            upload_script(api_url, token)
            delays = measure(api_url, token)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    print(
        f"submit -> first step running, {JOBS} jobs: median {statistics.median(delays):.3f} s, "
        f"max {max(delays):.3f} s, min {min(delays):.3f} s (target: median < 1 s)"
    )


if __name__ == "__main__":
    main()
