"""The local compute backend: job steps run as process groups on the server's own machine."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from epic.compute import runner as runner_module
from epic.compute.base import RunState, RunStatus, StepLaunch
from epic.compute.isolation import hand_over, job_uid, kill_all_processes_of

logger = logging.getLogger(__name__)

BASE_ENVIRONMENT_KEYS = ("PATH", "LANG", "LC_ALL", "TZ")
# The runner is stdlib-only; a copy goes into each step folder so that a job's own uid can
# run it without reading the installed package.
RUNNER_SOURCE = Path(runner_module.__file__).read_text()
# Written in the step folder just before its runner starts, and once it has: a step is
# never started twice.
STARTING_MARK = "starting"
RUNNER_PID = "runner.pid"


def mpi_launcher(num_tasks: int) -> list[str]:
    """mpirun for `num_tasks` ranks, kept on this machine's loopback and shared memory.

    Limitation: Open MPI's runtime still opens short-lived TCP listeners; its options keep them
    on loopback, but only a private network namespace would hide them entirely.
    """
    launcher = [
        "mpirun",
        "-np",
        str(num_tasks),
        "--oversubscribe",
        "--mca",
        "btl",
        "self,vader",
        "--mca",
        "pml",
        "ob1",
        "--mca",
        "oob_tcp_if_include",
        "lo",
        "--mca",
        "btl_tcp_if_include",
        "lo",
    ]
    if os.geteuid() == 0:
        launcher.append("--allow-run-as-root")
    return launcher


def step_environment(launch: StepLaunch) -> dict[str, str]:
    """A clean environment for the step: never the server's own (it may hold secrets)."""
    environment = {key: os.environ[key] for key in BASE_ENVIRONMENT_KEYS if key in os.environ}
    environment.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    environment["HOME"] = str(launch.case_dir)
    environment["PWD"] = str(launch.case_dir)
    environment["OMP_NUM_THREADS"] = str(launch.threads_per_task)
    environment.update(launch.environment)
    return environment


class LocalBackend:
    """Runs steps through the step runner, each in its own session, on this machine."""

    queues_steps = False

    def __init__(self, cores: int):
        self.cores = cores
        self._children: dict[int, subprocess.Popen] = {}

    def capacity(self) -> int | None:
        """The cores of the queue: never more run at once."""
        return self.cores

    def start(self, launch: StepLaunch) -> int:
        """Write the step's spec and runner, start the runner, and return its PID.

        A step whose runner was started already (the server died before recording it) is
        not started again: its runner, running or ended, is adopted.
        """
        adopted = _started_runner(launch.step_dir)
        if adopted is not None:
            logger.warning("Step %s: adopted its runner, PID %s", launch.step_id, adopted)
            return adopted
        launch.step_dir.mkdir(parents=True, exist_ok=True)
        (launch.step_dir / "exit").unlink(missing_ok=True)
        uid = job_uid(launch.job_id)
        runner = launch.step_dir / "runner.py"
        runner.write_text(RUNNER_SOURCE)
        write_scripts(launch)
        spec_path = launch.step_dir / "spec.json"
        spec = runner_spec(launch, mpi_launcher(launch.num_tasks), reap_own_uid=uid is not None)
        spec_path.write_text(json.dumps(spec))
        if uid is not None:
            hand_over(launch.case_dir, launch.step_dir, uid)

        (launch.step_dir / STARTING_MARK).touch()
        with open(launch.step_dir / "runner.log", "ab") as runner_log:
            process = subprocess.Popen(
                [_runner_python(uid), str(runner), str(spec_path)],
                cwd=launch.case_dir,
                stdin=subprocess.DEVNULL,
                stdout=runner_log,
                stderr=runner_log,
                start_new_session=True,
                env=step_environment(launch),
                user=uid,
                group=uid,
                extra_groups=[] if uid is not None else None,
                umask=0o077 if uid is not None else -1,
            )
        self._children[process.pid] = process
        _write_atomically(launch.step_dir / RUNNER_PID, str(process.pid))
        logger.debug("Started step %s as PID %s (uid %s)", launch.step_id, process.pid, uid)
        return process.pid

    def start_many(self, launches: list[StepLaunch]) -> list[int | Exception]:
        """Start steps one after the other: for each, its PID or the error that stopped it."""
        started: list[int | Exception] = []
        for launch in launches:
            try:
                started.append(self.start(launch))
            except (OSError, RuntimeError) as error:
                started.append(error)
        return started

    def refresh(self, running: list[tuple[StepLaunch, int]]) -> None:
        """Nothing to batch: `status` reads each step's exit file and process directly."""

    def status(self, launch: StepLaunch, backend_id: int) -> RunStatus:
        """Read the exit file; otherwise tell a live runner from a lost one."""
        exit_file = launch.step_dir / "exit"
        child = self._children.get(backend_id)
        runner_code = child.poll() if child is not None else None
        if runner_code is not None:
            self._children.pop(backend_id, None)

        if exit_file.exists():
            ended = datetime.fromtimestamp(exit_file.stat().st_mtime, tz=UTC)
            return RunStatus(RunState.EXITED, int(exit_file.read_text()), ended)
        if backend_id in self._children or _is_runner(backend_id, launch.step_dir):
            return RunStatus(RunState.RUNNING)
        # The runner died before recording an exit code; its own status is all there is.
        lost_code = None if runner_code is None else _shell_code(runner_code)
        return RunStatus(RunState.LOST, lost_code, datetime.now(tz=UTC))

    def stop(self, launch: StepLaunch, backend_id: int, force: bool = False) -> None:
        """Signal the runner's whole process group."""
        if not (backend_id in self._children or _is_runner(backend_id, launch.step_dir)):
            return
        try:
            os.killpg(backend_id, signal.SIGKILL if force else signal.SIGTERM)
        except ProcessLookupError:
            return
        uid = job_uid(launch.job_id)
        if force and uid is not None:
            kill_all_processes_of(uid)
        logger.debug("Sent %s to step %s", "SIGKILL" if force else "SIGTERM", launch.step_id)

    def read_logs(self, launch: StepLaunch, limit: int) -> tuple[str, str]:
        """The tails of the step's stdout and stderr files."""
        return (
            tail_file(launch.step_dir / "stdout", limit),
            tail_file(launch.step_dir / "stderr", limit),
        )

    def stdout_lines(self, launch: StepLaunch):
        """The step's whole stdout, one line at a time."""
        return stdout_lines_of(launch)


def stdout_lines_of(launch: StepLaunch):
    """A step's whole stdout file, one line at a time (nothing if it has none yet)."""
    path = launch.step_dir / "stdout"
    if not path.exists():
        return
    with open(path, errors="replace") as stdout:
        yield from stdout


def _shell_code(returncode: int) -> int:
    """A process's return code as a shell reports it (128 + N for signal N)."""
    return returncode if returncode >= 0 else 128 - returncode


def runner_spec(launch: StepLaunch, launcher: list[str], reap_own_uid: bool) -> dict:
    """The step runner's spec for a step: where it runs, what, with which MPI launcher."""
    return {
        "reap_own_uid": reap_own_uid,
        "case_dir": str(launch.case_dir),
        "stdout": str(launch.step_dir / "stdout"),
        "stderr": str(launch.step_dir / "stderr"),
        "exit_file": str(launch.step_dir / "exit"),
        "commands": launch.plan.get("commands", []),
        "files": launch.plan.get("files", {}),
        "remove": launch.plan.get("remove", []),
        "environment": step_environment(launch),
        "mpi_launcher": launcher,
        **script_paths(launch),
    }


def write_scripts(launch: StepLaunch) -> None:
    """Write the application's start, stop and environment scripts into the step folder."""
    for name, path in script_paths(launch).items():
        Path(path).write_text(launch.scripts[name])


def script_paths(launch: StepLaunch) -> dict[str, str]:
    """Where the runner finds each of the application's non-empty scripts."""
    return {
        name: str(launch.step_dir / f"{name}.sh")
        for name, content in launch.scripts.items()
        if content
    }


def _runner_python(uid: int | None) -> str:
    """The interpreter of the runner: ours, or the system's where a job uid may not reach ours."""
    if uid is None:
        return sys.executable
    return settings.EPIC_RUNNER_PYTHON


def _started_runner(step_dir: Path) -> int | None:
    """The PID of a runner started for this step before, whether it runs, ended or was lost.

    A server killed between starting the runner and writing its PID left only the mark it
    made before: the runner is then looked for among this machine's processes.
    """
    try:
        return int((step_dir / RUNNER_PID).read_text())
    except (OSError, ValueError):
        pass
    if not (step_dir / STARTING_MARK).exists():
        return None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_runner(int(entry.name), step_dir):
            return int(entry.name)
    return None


def _write_atomically(path: Path, text: str) -> None:
    """Write a small file whole or not at all."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text)
    partial.replace(path)


def _is_runner(pid: int, step_dir: Path) -> bool:
    """Whether `pid` is still this step's runner (PIDs are reused, so check its command line)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(step_dir / "spec.json").encode() in cmdline


def tail_file(path: Path, limit: int) -> str:
    """The last `limit` bytes of a file, decoded leniently, starting at a whole line."""
    if not path.exists():
        return ""
    with open(path, "rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        stream.seek(max(size - limit, 0))
        data = stream.read()
    if size > limit and b"\n" in data:
        data = data.split(b"\n", 1)[1]
    # NUL bytes mean nothing in a log, and PostgreSQL's text columns refuse them.
    return data.replace(b"\x00", b"").decode(errors="replace")
