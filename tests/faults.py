"""Fault injection around a real `epic serve`: kill it, restart it, and count what really ran.

An `Installation` is one EPIC_HOME served by `epic serve` processes that a test starts, kills
with SIGKILL by PID and starts again on the same state and the same ports (steps on compute
nodes keep the server's address). Tests talk to it over HTTP on 127.0.0.1 only. Steps record
each run by appending a line to a ledger file outside their working folders, so that a test
can count how often each step really ran; Slurm's own records count the Slurm jobs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import EPIC, epic_command, free_port, reachable_home, s3_client, server_env

# How often a test polls the API or Slurm while it waits for something.
POLL_SECONDS = 0.05
# How long `epic serve` may take to listen (migrations and the catalog come first).
STARTUP_SECONDS = 60
# Slurm job states in which a job still waits for or holds its cores.
SLURM_ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED"}
SLURMCTLD_PID_FILE = Path("/run/slurm/slurmctld.pid")
LOCAL_QUEUE = "local"
# The name the Slurm backend gives the job of a step (`epic-<installation>-step-<step id>`).
STEP_JOB_NAME = re.compile(r"^epic-(?:\w+-)?step-\d+$")
# What `sinfo` shows for a node that takes jobs again.
NODE_SERVING = re.compile(r"^(idle|mixed|allocated)$", re.MULTILINE)


class Installation:
    """One EPIC_HOME, served by `epic serve` processes that a test starts and kills."""

    def __init__(self, home: Path):
        self.home = home
        self.ledger = home / "ledger"
        self.release_file = home / "release"
        # Job uids must not collide with those of servers other tests run at the same time.
        uid_base = 1_000_000 + secrets.randbelow(4 * 10**7) * 100
        self.env = {**server_env(home), "EPIC_JOB_UID_BASE": str(uid_base)}
        self.port, self.s3_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None
        self.token = ""
        # Every Slurm job id the API reported for a step, to clean up after the test.
        self.slurm_ids: set[int] = set()

    # The server

    def start(self, worker: bool = True) -> None:
        """Start `epic serve` on the installation's state and ports, and wait until it listens.

        Without its worker the server only answers the API: nothing moves a job on.
        """
        argv = [str(EPIC), "serve", "--port", str(self.port), "--s3-port", str(self.s3_port)]
        env = {**self.env, "EPIC_EMBEDDED_WORKER": "1" if worker else "0"}
        with open(self.home / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=log, text=True
            )
        watchdog = threading.Timer(STARTUP_SECONDS, self.process.kill)
        watchdog.start()
        try:
            printed = ""
            while "S3 endpoint" not in printed:
                line = self.process.stdout.readline()
                if not line:
                    raise RuntimeError(f"epic serve did not start:\n{self.log()[-4000:]}")
                printed += line
        finally:
            watchdog.cancel()

    def kill(self) -> None:
        """Kill the server with SIGKILL by its PID, as a power cut or the OOM killer would."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        """Stop the server with SIGTERM (SIGKILL if it hangs), if it runs."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def admin(self, *args: str) -> str:
        """Run an `epic admin` command on the installation's state."""
        return epic_command(self.home, "admin", *args)

    def log(self) -> str:
        """Everything the servers of this installation wrote to stderr."""
        path = self.home / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # The API

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """Call the API as alice; answer the status and the decoded body."""
        # The server is the test's own, on 127.0.0.1.
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v2{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def submit(self, spec: dict) -> int:
        """Submit a one-job array and return the job's id."""
        return self.submit_array(spec)[0]["id"]

    def submit_array(self, spec: dict) -> list[dict]:
        """Submit a job array and return its jobs as the API answered, with their steps."""
        status, answer = self.call("POST", "/job/", spec)
        assert status == 201, answer
        return answer

    def submit_script(self, folder: str, body: str, queue: str, partitions: int = 1) -> int:
        """Upload run.sh with `body` into epic://folder/ and submit it to a queue."""
        self.upload({f"{folder}/run.sh": body.encode()})
        return self.submit(script_job(folder, queue, partitions))

    def job(self, job_id: int) -> dict:
        """The job as the API shows it, with its steps."""
        status, answer = self.call("GET", f"/job/{job_id}/")
        assert status == 200, answer
        # Steps of the local queue have PIDs as their ids, never to be taken for Slurm's.
        if answer["resource"]["queue_code"] != LOCAL_QUEUE:
            self.slurm_ids |= {step["local_job_id"] for step in answer["job_steps"]} - {None}
        return answer

    def wait_for_job(
        self, job_id: int, condition: Callable[[dict], bool], what: str, timeout: float = 60
    ) -> dict:
        """Poll the job until `condition` holds for it, and return it."""
        deadline = time.monotonic() + timeout
        while not condition(job := self.job(job_id)):
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} never {what}: {job}\n{self.log()[-5000:]}")
            time.sleep(POLL_SECONDS)
        return job

    def wait_until_finished(self, job_ids: list[int], timeout: float = 60) -> dict[int, dict]:
        """Poll until every job has ended, and return them by id."""
        deadline = time.monotonic() + timeout
        return {
            job_id: self.wait_for_job(
                job_id, lambda job: job["finished"], "finished", deadline - time.monotonic()
            )
            for job_id in job_ids
        }

    # The data store

    def s3(self):
        """A boto3 client on a new data session, the bucket, and the user's prefix in it."""
        status, session = self.call("GET", "/data/session/")
        assert status == 200, session
        return s3_client(session), session["s3_location"], session["s3_obj_key"]

    def upload(self, files: dict[str, bytes]) -> None:
        """Put files into the user's data store through the S3 endpoint, by epic:// path."""
        client, bucket, prefix = self.s3()
        for path, content in files.items():
            client.put_object(Bucket=bucket, Key=prefix + path, Body=content)

    def stored(self, folder: str) -> dict[str, dict]:
        """The objects under an epic:// folder as the S3 endpoint lists them, by relative path."""
        client, bucket, prefix = self.s3()
        listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix + folder)
        assert not listing["IsTruncated"]
        return {
            item["Key"].removeprefix(prefix + folder): item for item in listing.get("Contents", [])
        }

    def download(self, path: str) -> bytes:
        """An object's content, downloaded through the S3 endpoint."""
        client, bucket, prefix = self.s3()
        return client.get_object(Bucket=bucket, Key=prefix + path)["Body"].read()

    # What ran

    def note(self, line: str) -> str:
        """A shell command that appends a line to the ledger."""
        return f'echo "{line}" >> {self.ledger}\n'

    def wait_for_release(self) -> str:
        """A shell loop that waits until the test releases the steps running it."""
        return f"while [ ! -e {self.release_file} ]; do sleep 0.2; done\n"

    def release(self) -> None:
        """Let every step waiting for the release go on."""
        self.release_file.touch()

    def ledger_lines(self) -> list[str]:
        """The lines steps appended to the ledger, in order."""
        return self.ledger.read_text().splitlines() if self.ledger.exists() else []

    def wait_for_ledger(self, *lines: str, timeout: float = 60) -> None:
        """Wait until the ledger holds all these lines."""
        deadline = time.monotonic() + timeout
        while not set(lines) <= set(self.ledger_lines()):
            if time.monotonic() > deadline:
                raise AssertionError(f"never noted {lines}: {self.ledger_lines()}")
            time.sleep(POLL_SECONDS)


@pytest.fixture(name="installation")
def served_installation(monkeypatch):
    """A started server on a fresh EPIC_HOME with alice of team acme, and an empty ledger."""
    # Credentials come from the data session: boto3 must never look for instance metadata.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    served = Installation(reachable_home())
    served.ledger.touch()
    # Steps of the local queue run under uids of their own and append to the ledger too.
    served.ledger.chmod(0o666)
    try:
        served.start()
        served.admin("user", "create", "alice", "--team", "acme")
        served.token = served.admin("token", "create", "alice").strip()
        yield served
    finally:
        served.release()
        served.stop()
        cancel_slurm_jobs_of(served)
        shutil.rmtree(served.home, ignore_errors=True)


def script_job(folder: str, queue: str, partitions: int = 1) -> dict:
    """A one-job array running run.sh from epic://folder/ on a queue, uploading every ending."""
    return script_jobs([folder], queue, partitions)


def script_jobs(folders: list[str], queue: str, partitions: int = 1) -> dict:
    """An array of jobs, each running run.sh from its epic://folder/, uploading every ending."""
    return {
        "name": folders[0],
        "config": {"upload": ["complete", "failure", "cancel"], "overwrite_existing": True},
        "jobs": [
            {
                "name": folder,
                "spec": {
                    "app_code": "script",
                    "tasks": [{"reference": "run", "partitions": partitions, "runtime": 1}],
                },
                "app_options": {"script": "run.sh"},
                "cluster": {"queue_code": queue},
                "input_data": {"path": f"epic://{folder}/"},
            }
            for folder in folders
        ],
    }


def step_statuses(job: dict) -> list[str]:
    """The statuses of a job's steps, in order."""
    return [step["status"] for step in job["job_steps"]]


def md5_hex(content: bytes) -> str:
    """The MD5 digest of some bytes, as md5sum prints it and the data store's ETags carry it."""
    return hashlib.md5(content).hexdigest()  # noqa: S324 (checksums, not a security use)


def patterned(label: str, size: int) -> bytes:
    """`size` bytes of lines naming `label`, as `yes LABEL | head -c SIZE` writes them."""
    line = f"{label}\n".encode()
    return (line * (size // len(line) + 1))[:size]


# Slurm


def slurm_jobs(completed: bool = True) -> list[dict]:
    """Every job the controller remembers and, unless told not to, the completion log holds."""
    listed = subprocess.run(
        ["squeue", "--noheader", "--states=all", "--Format=JobID:|,Name:|,State:|,WorkDir:|"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    jobs = {}
    for line in listed.splitlines():
        job_id, name, state, work_dir = line.removesuffix("|").split("|", 3)
        jobs[int(job_id)] = {"name": name.strip(), "state": state.strip(), "work_dir": work_dir}
    for job_id, job in (_completion_log() if completed else {}).items():
        jobs.setdefault(job_id, job)
    return [{"id": job_id, **job} for job_id, job in jobs.items()]


def _completion_log() -> dict[int, dict]:
    """The ended jobs of the completion log (`sacct -c`), which the controller may forget."""
    listed = subprocess.run(
        ["sacct", "-c", "--noheader", "--parsable2", "--format=jobid,jobname,state,workdir"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    ).stdout
    jobs = {}
    for line in listed.splitlines():
        job_id, name, state, work_dir = line.split("|", 3)
        if job_id.isdigit():
            jobs[int(job_id)] = {"name": name, "state": state.split()[0], "work_dir": work_dir}
    return jobs


def newest_slurm_job_id() -> int:
    """The highest job id the controller remembers (0 if none): later jobs have higher ones."""
    return max((job["id"] for job in slurm_jobs()), default=0)


def slurm_holds_a_step(step_ids: list[int], newer_than: int) -> bool:
    """Whether Slurm holds a job newer than `newer_than` named after one of these steps.

    Limitation: the name alone is checked, so a step of another installation with the same
    id, submitted meanwhile, also counts.
    """
    ids = {str(step_id) for step_id in step_ids}
    return any(
        job["id"] > newer_than
        and STEP_JOB_NAME.match(job["name"])
        and job["name"].rsplit("-", 1)[1] in ids
        for job in slurm_jobs(completed=False)
    )


def slurm_state(job_id: int) -> str:
    """The state of one Slurm job, such as PENDING or COMPLETED."""
    return next(job["state"] for job in slurm_jobs() if job["id"] == job_id)


def slurm_jobs_tagged_like(job_id: int, known: list[dict] | None = None) -> list[int]:
    """The ids of every Slurm job with the name and folder of job `job_id`: one step's jobs."""
    known = known if known is not None else slurm_jobs()
    tag = next((job["name"], job["work_dir"]) for job in known if job["id"] == job_id)
    return sorted(job["id"] for job in known if (job["name"], job["work_dir"]) == tag)


def slurm_runs_per_step(installation: Installation, job_ids: list[int]) -> dict[str, int]:
    """How many Slurm jobs ran each step of these jobs, by step name and id."""
    known = slurm_jobs()
    steps = [step for job_id in job_ids for step in installation.job(job_id)["job_steps"]]
    return {f"{step['step_name']}-{step['id']}": _slurm_runs(step, known) for step in steps}


def _slurm_runs(step: dict, known: list[dict]) -> int:
    """How many Slurm jobs carry the tag of a step's recorded job (0 if it has none)."""
    if step["local_job_id"] is None:
        return 0
    return len(slurm_jobs_tagged_like(step["local_job_id"], known))


def wait_for_slurm_state(job_id: int, states: set[str], timeout: float = 60) -> str:
    """Wait until a Slurm job is in one of `states`, and return that state."""
    deadline = time.monotonic() + timeout
    while (state := slurm_state(job_id)) not in states:
        if time.monotonic() > deadline:
            raise AssertionError(f"Slurm job {job_id} is still {state}, not one of {states}")
        time.sleep(POLL_SECONDS)
    return state


def cancel_slurm_jobs_of(installation: Installation) -> None:
    """Cancel, by id, the Slurm jobs of the installation's steps that still wait or run."""
    if not installation.slurm_ids:
        return
    known = slurm_jobs()
    steps = [
        job["id"]
        for job in known
        if job["id"] in installation.slurm_ids and STEP_JOB_NAME.match(job["name"])
    ]
    ours = {job_id for seen in steps for job_id in slurm_jobs_tagged_like(seen, known)}
    active = [
        job["id"] for job in known if job["id"] in ours and job["state"] in SLURM_ACTIVE_STATES
    ]
    if active:
        subprocess.run(["scancel", *map(str, active)], check=False, timeout=30)


@contextlib.contextmanager
def slurmctld_stopped() -> Iterator[None]:
    """Stop slurmctld with SIGTERM by the PID in its pid file; always start it again after.

    It is started as `.ci/slurm-up` starts it, and the block ends only once `sinfo` shows the
    node taking jobs again, so that other tests find the cluster as it was.
    """
    pid = int(SLURMCTLD_PID_FILE.read_text())
    assert _is_live_slurmctld(pid)
    try:
        os.kill(pid, signal.SIGTERM)
        _wait_until(lambda: not _is_live_slurmctld(pid), "slurmctld stopped", 30)
        yield
    finally:
        if not _is_live_slurmctld(_slurmctld_pid()):
            subprocess.run(["slurmctld"], check=True, timeout=60)
        _wait_until(_node_serves, "the Slurm node serves again", 60)


def _slurmctld_pid() -> int:
    """The PID in slurmctld's pid file, or 0 when there is none."""
    try:
        return int(SLURMCTLD_PID_FILE.read_text())
    except (OSError, ValueError):
        return 0


def _is_live_slurmctld(pid: int) -> bool:
    """Whether a process is a slurmctld that has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return name == "slurmctld" and state not in "ZX"


def _node_serves() -> bool:
    """Whether `sinfo` answers with the node idle, mixed or allocated."""
    probe = subprocess.run(
        ["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, check=False
    )
    return probe.returncode == 0 and NODE_SERVING.search(probe.stdout) is not None


def _wait_until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll `condition` until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.1)
