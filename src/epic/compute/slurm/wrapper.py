"""A step's Slurm batch script: it runs the step on a compute node, talking to the server by HTTP.

The Slurm backend sends this module's source as the batch script, followed by the step's
settings and a call of `main`, so nothing but python3 (3.8 or later) needs to be on the node,
and nothing on the node touches the server's disk. The wrapper

1. tells the server's step I/O endpoint which Slurm job it runs under (its first contact), and
   so exchanges the step's one-time bootstrap token for the session secret it uses from then on,
2. downloads the step's bundle (the step runner, its spec and the application's scripts) and
   the job's case folder into a scratch folder of its own under the node's scratch root,
3. runs the step runner there in a process group of its own, pushing new stdout, stderr and
   Slurm output bytes to the server every few seconds,
4. at the end pushes the logs once more, sends the case folder back, and sends the exit code
   last (the server learns from it that the step ended),
5. removes its scratch folder and its Slurm output file.

A stop signal from Slurm (scancel, the time limit) goes on to the runner's process group as
SIGTERM, and what the step produced is still sent back: Slurm waits KillWait (30 s by default)
before it kills the job. Requests are retried with backoff on connection errors and on the
server's "try again" answers, for a bounded time; when the server cannot be reached at the end,
the wrapper exits non-zero with a message in its Slurm output file and keeps its scratch folder.
It uses the standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

# Bytes per request, within what the server accepts (1 MiB of log, 16 MiB of archive).
LOG_PART_BYTES = 512 * 1024
CASE_PART_BYTES = 8 * 1024 * 1024
REQUEST_TIMEOUT = 60.0
# Answers that mean "try again": the step is still being started, or the server is busy.
RETRIED_STATUSES = (502, 503, 504)
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 10.0
# Once Slurm asked the step to stop: how long the runner may take before it is killed, and how
# long sending the results back is retried, so that both fit in Slurm's KillWait.
STOP_GRACE = 10.0
STOPPED_RETRY_SECONDS = 15.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
CASE_FOLDER = "case"
UPLOAD_ARCHIVE = "case-upload.tar"
# What an archive from the server may hold: members, bytes of a name and of one of its parts.
MAX_MEMBERS = 100_000
MAX_NAME_BYTES, MAX_PART_BYTES = 1024, 255


class StepIOError(Exception):
    """The server refused a request, or could not be reached within the time allowed."""

    def __init__(self, message: str, status: int | None = None, answer: bytes = b""):
        super().__init__(message)
        self.status = status
        self.answer = answer

    @property
    def retriable(self) -> bool:
        """Whether trying again may succeed: no answer at all, or a "try again" answer."""
        return self.status is None or self.status in RETRIED_STATUSES


class StepClient:
    """Requests to one step's I/O endpoint, with its bootstrap token, then its session secret."""

    def __init__(self, api_url: str, step_id: int, token: str):
        if not api_url.startswith(("http://", "https://")):
            raise ValueError(f"the server's URL {api_url!r} is not an http(s) URL")
        self.base = f"{api_url.rstrip('/')}/internal/steps/{step_id}/"
        self.token = token
        # The server is reached directly, never through a proxy of the node's environment.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body=None, retry_for: float = 0.0, into=None):
        """One request, retried with backoff for `retry_for` seconds while that may help.

        With `into`, the answer's body is written to that file; otherwise it is returned.
        """
        deadline = time.monotonic() + retry_for
        pause = FIRST_PAUSE
        while True:
            try:
                return self._once(method, path, body, into)
            except StepIOError as error:
                if not error.retriable or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)

    def append(self, path: str, offset: int, data: bytes, retry_for: float = 0.0) -> int:
        """Send bytes that belong at `offset`; return how many bytes the server now holds."""
        try:
            answer = self.call("POST", f"{path}?offset={offset}", data, retry_for)
        except StepIOError as error:
            if error.status != 409:
                raise
            # A gap: the server holds less than we thought; go on from where it stands.
            answer = error.answer
        return int(json.loads(answer)["size"])

    def _once(self, method: str, path: str, body, into):
        """One attempt of a request."""
        # The scheme was checked to be http(s) when the client was made.
        request = urllib.request.Request(self.base + path, data=body, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            request.add_header("Content-Type", "application/octet-stream")
        try:
            with self.opener.open(request, timeout=REQUEST_TIMEOUT) as answer:
                if into is None:
                    return answer.read()
                with open(into, "wb") as target:
                    shutil.copyfileobj(answer, target)
                return b""
        except urllib.error.HTTPError as error:
            text = error.read()[:2000]
            message = f"{method} {path}: HTTP {error.code} {text!r}"
            raise StepIOError(message, error.code, text) from error
        except (OSError, http.client.HTTPException) as error:
            raise StepIOError(f"{method} {path}: {error}") from error


class Stopper:
    """Catches Slurm's stop signals and passes them on to the runner's process group."""

    def __init__(self):
        self.signal: int | None = None
        self.since = 0.0
        self.runner: subprocess.Popen | None = None

    def install(self) -> None:
        """Handle the stop signals from now on."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.handle)

    def handle(self, signum, frame) -> None:
        """Remember the first stop signal and ask the runner to stop (it understands SIGTERM)."""
        if self.signal is None:
            self.signal, self.since = signum, time.monotonic()
        self.signal_runner(signal.SIGTERM)

    def signal_runner(self, signum: int) -> None:
        """Signal the runner's whole process group, if it still runs."""
        if self.runner is not None and self.runner.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.runner.pid, signum)

    @property
    def overdue(self) -> bool:
        """Whether the runner has had its grace after a stop signal."""
        return self.signal is not None and time.monotonic() - self.since > STOP_GRACE


class LogPusher:
    """Sends what was appended to the step's log files since the last push."""

    def __init__(self, client: StepClient, files: dict):
        self.client = client
        self.files = files
        self.offsets = {stream: 0 for stream in files}
        self.warned = False

    def push(self, retry_for: float = 0.0) -> None:
        """Send every stream's new bytes, in parts."""
        for stream, path in self.files.items():
            size = path.stat().st_size if path.exists() else 0
            while self.offsets[stream] < size:
                sent = self.offsets[stream]
                with open(path, "rb") as log:
                    log.seek(sent)
                    data = log.read(min(LOG_PART_BYTES, size - sent))
                held = self.client.append(f"logs/{stream}/", sent, data, retry_for)
                if held == sent:
                    break
                # Past what was sent, or back to where the server stands after a gap.
                self.offsets[stream] = held

    def push_quietly(self) -> None:
        """Push once; a failure waits for the next push (and is reported once)."""
        try:
            self.push()
        except (StepIOError, OSError, ValueError) as error:
            if not self.warned:
                say(f"epic: logs could not be pushed yet ({error}); trying again later")
                self.warned = True


# The wrapper's life


def main(step: dict) -> int:
    """Run one step on this node as the server's settings describe it; return the exit code."""
    stopper = Stopper()
    stopper.install()
    client = StepClient(step["api_url"], step["step_id"], step["token"])
    try:
        prefix = f"epic-step-{step['step_id']}-"
        scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=step["scratch_root"]))
    except OSError as error:
        say(f"epic: no scratch folder under {step['scratch_root']}: {error}")
        return 1
    try:
        code = run_step(step, client, scratch, stopper)
    except (StepIOError, OSError, ValueError, tarfile.TarError) as error:
        say(f"epic: step {step['step_id']} ended without reporting to {step['api_url']}: {error}")
        say(f"epic: what the step produced is kept in {scratch}")
        return 1

    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):
        Path(step["scheduler_output"]).unlink(missing_ok=True)
    return code


def run_step(step: dict, client: StepClient, scratch: Path, stopper: Stopper) -> int:
    """Fetch, run, push and send back; return the step's exit code."""
    retry = step["retry_seconds"]
    slurm_job = os.environ.get("SLURM_JOB_ID", "")
    answer = client.call("PUT", "scheduler-job/", slurm_job.encode(), retry)
    client.token = json.loads(answer)["session"]
    spec_path = fetch(step, client, scratch, retry)
    pusher = LogPusher(
        client,
        {
            "stdout": scratch / "stdout",
            "stderr": scratch / "stderr",
            "scheduler": Path(step["scheduler_output"]),
        },
    )
    ran = stopper.signal is None
    if ran:
        run_runner(scratch, spec_path, stopper, pusher, step["push_seconds"])

    retry = STOPPED_RETRY_SECONDS if stopper.signal is not None else retry
    return send_back(client, scratch, pusher, retry, ran)


def fetch(step: dict, client: StepClient, scratch: Path, retry: float) -> Path:
    """Download the bundle and the case into the scratch folder; return the runner's spec."""
    archive = scratch / "download.tar"
    client.call("GET", "bundle/", retry_for=retry, into=archive)
    extract(archive, scratch)
    client.call("GET", "case/", retry_for=retry, into=archive)
    (scratch / CASE_FOLDER).mkdir()
    extract(archive, scratch / CASE_FOLDER)
    archive.unlink()

    spec = json.loads((scratch / "spec.json").read_text())
    spec_path = scratch / "spec-node.json"
    spec_path.write_text(json.dumps(on_this_node(spec, step, scratch)))
    return spec_path


def on_this_node(spec: dict, step: dict, scratch: Path) -> dict:
    """The spec with its paths in the scratch folder and the job's Slurm variables added."""
    for key in step["path_keys"]:
        if key in spec:
            spec[key] = str(scratch / spec[key])
    environment = spec["environment"]
    for name in step["case_variables"]:
        environment[name] = str(scratch / CASE_FOLDER)
    environment.update(
        (name, value) for name, value in os.environ.items() if name.startswith("SLURM_")
    )
    return spec


def run_runner(scratch: Path, spec_path: Path, stopper, pusher, push_seconds: float) -> None:
    """Run the step runner in its own session, pushing the logs while it runs."""
    spec = json.loads(spec_path.read_text())
    runner = subprocess.Popen(
        [sys.executable, str(scratch / "runner.py"), str(spec_path)],
        cwd=scratch,
        env=spec["environment"],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    stopper.runner = runner
    if stopper.signal is not None:
        stopper.signal_runner(signal.SIGTERM)
    while True:
        try:
            runner.wait(timeout=push_seconds)
            return
        except subprocess.TimeoutExpired:
            pass
        if stopper.overdue:
            stopper.signal_runner(signal.SIGKILL)
        pusher.push_quietly()


def send_back(client: StepClient, scratch: Path, pusher, retry: float, ran: bool) -> int:
    """Push the logs, send the case folder, then the exit code; return the step's exit code.

    A step that never ran, or whose runner was killed before it recorded an exit code, sends
    none: Slurm's own word on the job then tells the server how it ended.
    """
    try:
        pusher.push(retry)
    except StepIOError as error:
        say(f"epic: the last logs could not be pushed: {error}")
    if not ran:
        return 128 + signal.SIGTERM
    send_case(client, scratch, retry)

    exit_file = scratch / "exit"
    if not exit_file.exists():
        say("epic: the step runner ended without recording an exit code")
        return 128 + signal.SIGKILL
    code = int(exit_file.read_text())
    client.call("PUT", "exit/", str(code).encode(), retry)
    return code


# The case folder, as tar archives


def send_case(client: StepClient, scratch: Path, retry: float) -> None:
    """Pack the case folder and send it in parts, then ask the server to swap it in."""
    archive = scratch / UPLOAD_ARCHIVE
    size, digest = pack(scratch / CASE_FOLDER, archive)
    for attempt in (1, 2):
        send_parts(client, archive, size, retry)
        description = json.dumps({"size": size, "sha256": digest}).encode()
        try:
            client.call("PUT", "case/", description, retry)
            break
        except StepIOError as error:
            # The server dropped an archive that did not match: send it whole once more.
            if error.status != 409 or attempt == 2:
                raise
    archive.unlink()


def send_parts(client: StepClient, archive: Path, size: int, retry: float) -> None:
    """Send an archive in parts, each at its offset, from where the server stands."""
    sent = 0
    with open(archive, "rb") as stream:
        while sent < size:
            stream.seek(sent)
            held = client.append("case/parts/", sent, stream.read(CASE_PART_BYTES), retry)
            if held == sent:
                raise StepIOError(f"the server took none of the case archive after {sent} bytes")
            sent = held


def pack(case: Path, archive: Path) -> tuple[int, str]:
    """Write the case folder to an uncompressed tar; return its size and SHA-256 digest.

    Only plain files and folders go, as the server takes nothing else: links, sockets and
    devices are left out.
    """
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted_entries(case):
            name = os.path.relpath(path, case)
            if path.is_symlink():
                say(f"epic: {name} is a link; it is not sent back")
            elif path.is_dir() or path.is_file():
                tar.add(path, arcname=name, recursive=False)
    digest = hashlib.sha256()
    with open(archive, "rb") as stream:
        for chunk in iter(lambda: stream.read(1024 * 1024), b""):
            digest.update(chunk)
    return archive.stat().st_size, digest.hexdigest()


def sorted_entries(root: Path):
    """Everything under `root`, parents first, in a stable order, links not followed."""
    for folder, folders, files in os.walk(root):
        folders.sort()
        for name in sorted(folders + files):
            yield Path(folder) / name


def extract(archive: Path, target: Path) -> None:
    """Extract a tar from the server, holding plain files and folders only, checked first."""
    with tarfile.open(archive, "r:") as tar:
        total = 0
        for count, member in enumerate(tar, 1):
            if count > MAX_MEMBERS:
                raise ValueError(f"the archive has more than {MAX_MEMBERS} members")
            check_member(member)
            total += member.size if member.isreg() else 0
        if total > shutil.disk_usage(target).free:
            raise ValueError(f"the archive's {total} bytes do not fit in {target}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
        else:
            # Without the filter (before Python 3.11.4), check_member has vetted every member.
            tar.extractall(target)  # noqa: S202


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse anything but plain files and folders, absolute names, `..` and over-long names."""
    name = member.name.encode("utf-8", "surrogateescape")
    if member.issparse() or not (member.isfile() or member.isdir()):
        raise ValueError(f"archive member {member.name!r} is not a plain file or folder")
    if member.name.startswith("/") or ".." in member.name.split("/"):
        raise ValueError(f"archive member {member.name!r} leaves its folder")
    if len(name) > MAX_NAME_BYTES or any(len(part) > MAX_PART_BYTES for part in name.split(b"/")):
        raise ValueError(f"archive member name {member.name[:100]!r}... is too long")


def say(message: str) -> None:
    """A line in the job's Slurm output file (which the server also receives)."""
    print(message, file=sys.stderr, flush=True)
