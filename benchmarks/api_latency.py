"""Latency and throughput of the job read endpoints over 100,000 seeded jobs.

For SQLite (the embedded default) and PostgreSQL in turn: seeds 100,000 jobs of three steps over
20 teams in a separate process, starts `epic serve` on loopback without its worker, and measures
over keep-alive HTTP connections the p50 and p99 latency of the job list, a job read and the step
list, then the requests per second of the job list with 8 concurrent clients. Targets: p50
under 15 ms and p99 under 50 ms.

PostgreSQL is reached at 127.0.0.1:5432 as user postgres; the database epic_bench is created for
the run and dropped after it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e import servers

REPO = Path(__file__).resolve().parents[1]

JOBS = 100_000
TEAMS = 20
PAGE = 20
# Offsets are drawn from the first pages, where users look.
FIRST_PAGES = 10
REQUESTS = 300
WARMUP_REQUESTS = 20
CLIENTS = 8
THROUGHPUT_SECONDS = 10
P50_TARGET_MS = 15
P99_TARGET_MS = 50
LOOPBACK = "127.0.0.1"
POSTGRES_ADMIN_URL = f"postgresql://postgres@{LOOPBACK}:5432/postgres"
POSTGRES_DATABASE = "epic_bench"
SEED_TIMEOUT = 900
REQUEST_TIMEOUT = 30


@dataclass
class Team:
    """A seeded team as a client sees it: its token and its job ids."""

    token: str
    job_ids: list[int]


def job_list_path(team: Team, rng: random.Random) -> str:
    """A page of the team's jobs near the start of the list."""
    return f"/job/?limit={PAGE}&offset={rng.randrange(FIRST_PAGES) * PAGE}"


def job_read_path(team: Team, rng: random.Random) -> str:
    """One of the team's jobs."""
    return f"/job/{rng.choice(team.job_ids)}/"


def jobstep_list_path(team: Team, rng: random.Random) -> str:
    """A page of the team's steps near the start of the list."""
    return f"/jobstep/?limit={PAGE}&offset={rng.randrange(FIRST_PAGES) * PAGE}"


ENDPOINTS: dict[str, Callable[[Team, random.Random], str]] = {
    "job_list": job_list_path,
    "job_read": job_read_path,
    "jobstep_list": jobstep_list_path,
}


class Client:
    """One keep-alive HTTP connection to the API."""

    def __init__(self, api_url: str):
        parts = urlsplit(api_url)
        if parts.hostname != LOOPBACK:
            raise ValueError(f"the benchmark only calls {LOOPBACK}, not {parts.hostname}")
        self.prefix = parts.path
        self.connection = http.client.HTTPConnection(LOOPBACK, parts.port, timeout=REQUEST_TIMEOUT)

    def get(self, path: str, token: str) -> bytes:
        """GET a path under the API with a team's token; the body of a 200, else raise."""
        self.connection.request(
            "GET", self.prefix + path, headers={"Authorization": f"Bearer {token}"}
        )
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status} {body[:200]!r}")
        return body

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def latencies(api_url: str, teams: list[Team], endpoint: str) -> list[float]:
    """Milliseconds of REQUESTS sequential requests, each as a random team, after a warm-up."""
    path_for = ENDPOINTS[endpoint]
    rng = random.Random(endpoint)  # noqa: S311 - a repeatable load, not a secret
    client = Client(api_url)
    try:
        for _ in range(WARMUP_REQUESTS):
            team = rng.choice(teams)
            client.get(path_for(team, rng), team.token)

        timings = []
        for _ in range(REQUESTS):
            team = rng.choice(teams)
            path = path_for(team, rng)
            started = time.perf_counter()
            client.get(path, team.token)
            timings.append((time.perf_counter() - started) * 1000)
        return timings
    finally:
        client.close()


def job_list_loop(api_url: str, teams: list[Team], seed: int, deadline: float, counts: list):
    """Request pages of the job list until the deadline; append how many were answered."""
    rng = random.Random(seed)  # noqa: S311 - a repeatable load, not a secret
    client = Client(api_url)
    answered = 0
    try:
        while time.perf_counter() < deadline:
            team = rng.choice(teams)
            client.get(job_list_path(team, rng), team.token)
            answered += 1
    finally:
        client.close()
        counts.append(answered)


def throughput(api_url: str, teams: list[Team]) -> float:
    """Job list requests per second answered to CLIENTS concurrent keep-alive clients."""
    counts: list[int] = []
    started = time.perf_counter()
    deadline = started + THROUGHPUT_SECONDS
    threads = [
        threading.Thread(target=job_list_loop, args=(api_url, teams, seed, deadline, counts))
        for seed in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=THROUGHPUT_SECONDS + 2 * REQUEST_TIMEOUT)
    elapsed = time.perf_counter() - started
    if len(counts) != CLIENTS:
        raise RuntimeError(f"{CLIENTS - len(counts)} clients did not finish")
    return sum(counts) / elapsed


def percentile(values: list[float], percent: int) -> float:
    """The value below which `percent` percent of the values fall."""
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def latency_line(database: str, endpoint: str, timings: list[float]) -> str:
    """One printed figure: p50 and p99 of an endpoint, and whether they meet the targets."""
    p50, p99 = percentile(timings, 50), percentile(timings, 99)
    verdict = "ok" if p50 < P50_TARGET_MS and p99 < P99_TARGET_MS else "MISSED"
    return (
        f"{database} {endpoint} p50 {p50:.1f} ms p99 {p99:.1f} ms "
        f"(target p50 < {P50_TARGET_MS} ms, p99 < {P99_TARGET_MS} ms: {verdict})"
    )


def server_environment(home: Path, database_url: str | None) -> dict[str, str]:
    """The environment of the seeding process and of the server: state under `home`, no worker."""
    env = {key: value for key, value in os.environ.items() if key != "EPIC_DATABASE_URL"}
    env.update(EPIC_HOME=str(home), EPIC_EMBEDDED_WORKER="0")
    if database_url:
        env["EPIC_DATABASE_URL"] = database_url
    return env


def seed(env: dict[str, str], home: Path, jobs: int) -> tuple[dict, float]:
    """Seed the database in a separate process; what it inserted and the seconds it took."""
    started = time.perf_counter()
    with open(home / "seed.log", "wb") as log:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks._seed", str(jobs), str(TEAMS)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log,
            timeout=SEED_TIMEOUT,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"seeding failed: {(home / 'seed.log').read_text()[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1]), time.perf_counter() - started


def start_server(env: dict[str, str], home: Path) -> tuple[subprocess.Popen, str]:
    """Start `epic serve` on free loopback ports with `env`; the process and the API's URL."""
    process, api_url, _ = servers.start_server(home, env)
    return process, api_url


def stop_server(process: subprocess.Popen) -> None:
    """Stop the server this benchmark started, and wait for it."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def check_seeded(api_url: str, teams: list[Team]) -> None:
    """Make sure the server sees the first team's jobs, all of them and only them."""
    client = Client(api_url)
    try:
        count = json.loads(client.get("/job/?limit=1", teams[0].token))["count"]
    finally:
        client.close()
    if count != len(teams[0].job_ids):
        raise RuntimeError(f"the server lists {count} jobs, {len(teams[0].job_ids)} were seeded")


def measure(database: str, env: dict[str, str], home: Path, jobs: int) -> None:
    """Seed, serve and measure one database; print the figures as they come."""
    seeded, seconds = seed(env, home, jobs)
    teams = [Team(team["token"], team["job_ids"]) for team in seeded["teams"]]
    counts = ", ".join(f"{count} {table}" for table, count in seeded["counts"].items())
    print(f"{database} seeded {counts} in {seconds:.0f} s")

    process, api_url = start_server(env, home)
    try:
        check_seeded(api_url, teams)
        for endpoint in ENDPOINTS:
            print(latency_line(database, endpoint, latencies(api_url, teams, endpoint)))
        rate = throughput(api_url, teams)
        print(f"{database} job_list {rate:.0f} requests/s with {CLIENTS} keep-alive clients")
    finally:
        stop_server(process)


def run_postgresql(home: Path, jobs: int) -> None:
    """Measure on a database of its own in the local PostgreSQL, dropped afterwards."""
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {POSTGRES_DATABASE}")
    try:
        url = f"postgresql://postgres@{LOOPBACK}:5432/{POSTGRES_DATABASE}"
        measure("postgresql", server_environment(home, url), home, jobs)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {POSTGRES_DATABASE}")


def main() -> None:
    """Measure the chosen databases, each under a fresh EPIC_HOME."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=JOBS)
    args = parser.parse_args()

    print(f"{CLIENTS} clients share this machine's {os.cpu_count()} cores with the server")
    print(load_line("before"))
    if args.database in ("sqlite", "both"):
        with fresh_home() as home:
            measure("sqlite", server_environment(home, None), home, args.jobs)
    if args.database in ("postgresql", "both"):
        with fresh_home() as home:
            run_postgresql(home, args.jobs)
    print(load_line("after"))


def load_line(moment: str) -> str:
    """The machine's load averages, since other work on it slows every figure."""
    one, five, fifteen = os.getloadavg()
    return f"load average {moment}: {one:.2f} {five:.2f} {fifteen:.2f}"


@contextmanager
def fresh_home() -> Iterator[Path]:
    """A new EPIC_HOME, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="epic-bench-") as home:
        # A server started as root refuses a home its jobs' uids could not pass through.
        Path(home).chmod(0o711)
        yield Path(home)


if __name__ == "__main__":
    main()
