"""Shared pieces of the Slurm benchmarks: a server with a Slurm queue, squeue and scancel by id,
and a PATH shim that records every Slurm command the server runs.

Jobs are recognised as the benchmark's own by their working folder, which lies under the
benchmark's temporary folder, so that Slurm jobs of anyone else on the cluster are never
counted or cancelled.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.e2e.servers import epic_command, s3_client, server_env, start_server

from benchmarks.submit_latency import call

QUEUE = "slurm-bench"
INPUT_FOLDER = "bench"
SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo")
# States in which a job is queued in Slurm: waiting for, or holding, its cores.
QUEUED_STATES = "PENDING,RUNNING,CONFIGURING"
# Ids per scancel call, well under any argv limit.
CANCEL_BATCH = 500
# The most jobs one POST /api/v2/job/ may carry (JobArraySpecSerializer's max_length).
JOBS_PER_REQUEST = 1000
# How a line of the server's log begins (its logging format's asctime).
LOG_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@dataclass
class BenchServer:
    """A running `epic serve` with one user, its token and a Slurm queue in the catalog."""

    process: subprocess.Popen
    home: Path
    api_url: str
    token: str

    def api(self, method: str, path: str, body=None):
        """One JSON request to the server's API as the benchmark user."""
        return call(self.api_url, self.token, method, path, body)


def partition_cores(partition: str) -> int:
    """The CPUs of one node of a Slurm partition, as sinfo reports them."""
    argv = ["sinfo", "--noheader", f"--partition={partition}", "--format=%c"]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return int(output.split()[0].rstrip("+"))


def catalog_yaml(partition: str, cores: int) -> str:
    """A catalog that offers the script application on a Slurm queue of `partition`."""
    return textwrap.dedent(
        f"""
        clusters:
          - name: slurm-bench
            backend: slurm
        queues:
          - queue_code: {QUEUE}
            cluster: slurm-bench
            partition: {partition}
            max_allocation: {cores}
            cores_per_cpu: {cores}
        applications:
          - product_name: Script
            versions:
              - app_code: script
                version: "1"
                driver: script
                queues: [local, {QUEUE}]
        """
    )


def start_bench_server(
    home: Path, partition: str, script: str, path_prefix: Path | None = None
) -> BenchServer:
    """Start `epic serve` on `home` with a Slurm queue, a user and epic://bench/run.sh.

    With `path_prefix`, that folder comes first on the server's PATH (the command shim).
    """
    home.chmod(0o711)
    # One team account for every run of the benchmarks, made once and kept; set here so that
    # the `epic admin` commands, which take this process's environment, use it too.
    os.environ["EPIC_SLURM_ACCOUNT_PREFIX"] = "epic-bench-t"
    env = server_env(home)
    # Where a backend whose jobs work in a node scratch folder puts them: under `home` too, so
    # that jobs_under(home) finds them either way.
    env["EPIC_SLURM_SCRATCH"] = str(home / "scratch")
    (home / "scratch").mkdir(exist_ok=True)
    (home / "scratch").chmod(0o1777)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    process, api_url, _ = start_server(home, env)
    try:
        catalog = home / "catalog.yaml"
        catalog.write_text(catalog_yaml(partition, partition_cores(partition)))
        epic_command(home, "admin", "catalog", "load", str(catalog))
        epic_command(home, "admin", "user", "create", "bench", "--team", "bench")
        # Where jobs are isolated, the team's steps run under its cluster account.
        epic_command(home, "admin", "cluster", "accounts", "--create")
        token = epic_command(home, "admin", "token", "create", "bench").strip()
        server = BenchServer(process, home, api_url, token)
        upload_input(server, script)
    except BaseException:
        stop_server(process)
        raise
    return server


def upload_input(server: BenchServer, script: str) -> None:
    """Put run.sh into epic://bench/ through the server's S3 endpoint."""
    session = server.api("GET", "/data/session/")
    key = f"{session['s3_obj_key']}{INPUT_FOLDER}/run.sh"
    s3_client(session).put_object(Bucket=session["s3_location"], Key=key, Body=script.encode())


def array_spec(count: int, name: str = "slurm bench") -> dict:
    """A job array of `count` one-step script jobs on the Slurm queue, running run.sh."""
    job = {
        "spec": {
            "app_code": "script",
            "tasks": [{"reference": "run", "partitions": 1, "runtime": 1}],
        },
        "app_options": {"script": "run.sh"},
        "cluster": {"queue_code": QUEUE},
        "input_data": {"path": f"epic://{INPUT_FOLDER}/"},
    }
    jobs = [{**job, "name": f"bench-{index}"} for index in range(count)]
    return {"name": name, "config": {"upload": []}, "jobs": jobs}


def submit_jobs(server: BenchServer, count: int) -> list[dict]:
    """Submit `count` jobs in as few requests as the API allows; return the jobs it answered."""
    jobs = []
    while len(jobs) < count:
        batch = min(JOBS_PER_REQUEST, count - len(jobs))
        jobs += server.api("POST", "/job/", array_spec(batch))
    return jobs


def stop_server(process: subprocess.Popen) -> None:
    """Stop a server by its PID: SIGTERM, then SIGKILL if it has not stopped within 60 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


# Slurm, seen and cancelled by id


def jobs_under(folder: Path, states: str = QUEUED_STATES) -> dict[int, tuple[str, str]]:
    """Slurm jobs in `states` working in `folder` or below it: id -> (name, state)."""
    argv = ["squeue", "--noheader", f"--states={states}", "--format=%i|%j|%T|%Z"]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    folder = str(folder.resolve())
    found = {}
    for line in output.splitlines():
        job_id, name, state, work_dir = line.split("|", 3)
        if work_dir == folder or work_dir.startswith(f"{folder}/"):
            found[int(job_id)] = (name, state)
    return found


def cancel(job_ids) -> None:
    """Cancel Slurm jobs by id, many per scancel call."""
    ids = sorted(set(job_ids))
    for start in range(0, len(ids), CANCEL_BATCH):
        batch = map(str, ids[start : start + CANCEL_BATCH])
        subprocess.run(["scancel", *batch], capture_output=True, check=False, timeout=120)


def cancel_all_under(folder: Path, known_ids=()) -> int:
    """Cancel the known ids and every queued job working under `folder`; return how many."""
    ids = set(known_ids) | set(jobs_under(folder))
    cancel(ids)
    return len(ids)


# The command shim


def write_shim(folder: Path, log: Path) -> None:
    """Executables named after each Slurm command that log their argv, then exec the real one.

    Each call appends one line, `EPOCH_SECONDS COMMAND ARGS` (the arguments cut at 300
    characters, so that one line is one short append even with hundreds of job ids).
    Limitation: the shim adds a bash start, about 1 ms, to every Slurm command it records.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for command in SLURM_COMMANDS:
        real = shutil.which(command)
        if real is None:
            continue
        shim = folder / command
        shim.write_text(
            "#!/bin/bash\n"
            'arguments="$*"\n'
            f'printf \'%s %s %s\\n\' "$EPOCHREALTIME" {command} "${{arguments:0:300}}"'
            f" >> '{log}'\n"
            f'exec {real} "$@"\n'
        )
        shim.chmod(0o755)


def shim_calls(log: Path, since: float = 0.0, until: float = float("inf")) -> list[tuple]:
    """The calls the shim logged between two times, as (epoch seconds, command, arguments)."""
    if not log.exists():
        return []
    calls = []
    for line in log.read_text().splitlines():
        stamp, _, rest = line.partition(" ")
        command, _, arguments = rest.partition(" ")
        if since <= float(stamp) < until:
            calls.append((float(stamp), command, arguments))
    return calls


def count_by_command(calls: list[tuple]) -> Counter:
    """How many calls of each Slurm command."""
    return Counter(command for _, command, _ in calls)


# The server's log


def log_times(log: Path, marker: str) -> list[float]:
    """Epoch times of the server log lines that contain `marker`."""
    times = []
    for line in log.read_text(errors="replace").splitlines():
        # Lines of a command's output, logged at debug, carry no time of their own.
        if marker in line and LOG_TIME.match(line):
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            times.append(stamp.timestamp())
    return times


class LogFollower:
    """Counts the lines of a growing log that contain a marker, reading only what is new."""

    def __init__(self, log: Path, marker: str):
        self.log, self.marker = log, marker
        self.offset, self.partial, self.seen = 0, "", 0

    def count(self) -> int:
        """How many lines so far hold the marker."""
        with open(self.log, errors="replace") as stream:
            stream.seek(self.offset)
            text = self.partial + stream.read()
            self.offset = stream.tell()
        *lines, self.partial = text.split("\n")
        self.seen += sum(1 for line in lines if self.marker in line)
        return self.seen


def wait_until(predicate, timeout: float, interval: float = 0.25) -> float:
    """Poll until predicate() holds; return the monotonic time it did, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(interval)
    raise TimeoutError(f"not reached within {timeout:g} s")
