"""Scale-out: one API server and several `epic worker` processes on one PostgreSQL database.

The workers share the jobs, one of them is killed with SIGKILL half-way, and still every
step runs exactly once and every job completes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.e2e.servers import EPIC, reachable_home, s3_client, server_env, start_server
from tests.helpers import script_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
JOBS = 40
WORKERS = 3
LEASE_SECONDS = 4


@pytest.fixture
def database():
    """A PostgreSQL database of the test's own, dropped after it."""
    psycopg = pytest.importorskip("psycopg")
    name = f"epic_scale_out_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL answers on 127.0.0.1:5432")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def cluster(database, node_shape):
    """The API server alone, its catalog with a Slurm queue, and a user's token."""
    home = reachable_home()
    env = {
        **server_env(home),
        "EPIC_DATABASE_URL": database,
        "EPIC_EMBEDDED_WORKER": "0",
        "EPIC_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    server, api_url, _ = start_server(home, env)
    processes = [server]
    env["EPIC_API_URL"] = api_url.removesuffix("/api/v2")
    try:
        token = _prepare(home, env, *node_shape)
        yield home, env, api_url, token, processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _prepare(home: Path, env: dict, partition: str, cpus: int) -> str:
    """Load a Slurm queue with the script application; make a user; return their token."""
    catalog = home / "catalog.yaml"
    catalog.write_text(
        textwrap.dedent(
            f"""
            clusters:
              - name: scale-out
                backend: slurm
            queues:
              - queue_code: scale-out
                cluster: scale-out
                partition: {partition}
                max_allocation: {cpus}
                cores_per_cpu: {cpus}
            applications:
              - product_name: Script
                versions:
                  - app_code: script
                    version: "1"
                    driver: script
                    queues: [scale-out]
            """
        )
    )
    _epic(env, "admin", "catalog", "load", str(catalog))
    _epic(env, "admin", "user", "create", "carol", "--team", "acme")
    _epic(env, "admin", "cluster", "accounts", "--create")
    return _epic(env, "admin", "token", "create", "carol").strip()


def _epic(env: dict, *args: str) -> str:
    """Run an `epic` command against the test's database."""
    return subprocess.run(
        [str(EPIC), *args], env=env, capture_output=True, text=True, check=True
    ).stdout


def _api(api_url: str, token: str, path: str, body: dict | None = None):
    """Call the API and decode its JSON answer."""
    headers = {"Authorization": f"Bearer {token}"}
    if body is None:
        answer = requests.get(api_url + path, headers=headers, timeout=60)
    else:
        answer = requests.post(api_url + path, json=body, headers=headers, timeout=60)
    assert answer.ok, f"{answer.status_code} {answer.text}"
    return answer.json()


def _submit(api_url: str, token: str, trail: Path) -> list[int]:
    """Upload a script that leaves one line per run in `trail`, and submit it JOBS times."""
    session = _api(api_url, token, "/data/session/")
    body = f'sleep 1\necho "$SLURM_JOB_NAME" >> {trail}\n'
    key = session["s3_obj_key"] + "case/run.sh"
    s3_client(session).put_object(Bucket=session["s3_location"], Key=key, Body=body.encode())
    spec = script_spec("case")
    spec["jobs"][0]["cluster"]["queue_code"] = "scale-out"
    spec["jobs"] = [{**spec["jobs"][0], "name": f"job {index}"} for index in range(JOBS)]
    created = _api(api_url, token, "/job/", spec)
    return [entry["id"] for entry in created]


def _start_worker(home: Path, env: dict, name: str) -> subprocess.Popen:
    """Start `epic worker --name NAME`, logging under the test's home."""
    return subprocess.Popen(
        [str(EPIC), "worker", "--name", name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(home / f"{name}.log", "ab"),
    )


def _states(api_url: str, token: str) -> dict[int, str]:
    """Every job's status, by id."""
    listed = _api(api_url, token, f"/job/?limit={JOBS}")
    return {job["id"]: job["status"] for job in listed["results"]}


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _registered_workers(database_url: str) -> int:
    """How many workers have registered in the database."""
    import psycopg

    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT count(*) FROM jobs_workerprocess").fetchone()[0]


def _workers_of_jobs(database_url: str) -> dict[str, int]:
    """How many jobs each worker ended up holding."""
    import psycopg

    with psycopg.connect(database_url) as connection:
        rows = connection.execute("SELECT worker, count(*) FROM jobs_job GROUP BY worker")
        return dict(rows.fetchall())


def test_workers_share_the_jobs_and_a_killed_one_loses_nothing(cluster, database, tmp_path):
    home, env, api_url, token, processes = cluster
    trail = Path(home) / "trail"
    # The steps run under the team's cluster account, which may write here and nowhere else.
    trail.touch()
    trail.chmod(0o666)
    workers = [_start_worker(home, env, f"worker-{index}") for index in range(WORKERS)]
    processes.extend(workers)
    _wait(lambda: _registered_workers(database) == WORKERS, 60, "the workers to register")
    job_ids = _submit(api_url, token, trail)

    _wait(lambda: len(trail.read_text().splitlines()) >= 4, 120, "4 runs")
    os.kill(workers[0].pid, signal.SIGKILL)
    workers[0].wait()
    _wait(
        lambda: all(status == "Job Complete" for status in _states(api_url, token).values()),
        240,
        "every job to complete",
    )

    runs = trail.read_text().splitlines()
    assert sorted(_states(api_url, token)) == sorted(job_ids)
    assert len(runs) == JOBS
    assert len(set(runs)) == JOBS
    holders = _workers_of_jobs(database)
    assert len(holders) >= 2, holders
    survivors = "".join((home / f"worker-{index}.log").read_text() for index in (1, 2))
    assert "taken over from worker 'worker-0'" in survivors
