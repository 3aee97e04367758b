"""The step runner: runs one job step's commands in its case folder and records the exit code.

It is started by a compute backend as `python -m epic.compute.runner SPEC.json`, in its own
session, so that it and everything it starts can be signalled as one process group and it
outlives a restart of the server. The exit code is written atomically to the spec's
`exit_file`; a step without that file did not finish on its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def _inside(case_dir: Path, relative: str) -> Path:
    """Resolve a path relative to the case folder, refusing anything that leaves it."""
    target = (case_dir / relative).resolve()
    if target != case_dir and case_dir not in target.parents:
        raise ValueError(f"path {relative!r} leaves the case folder")
    return target


def prepare_case(spec: dict, case_dir: Path) -> None:
    """Remove the paths and write the files the step's plan names."""
    for pattern in spec.get("remove", []):
        for match in case_dir.glob(pattern):
            target = _inside(case_dir, str(match.relative_to(case_dir)))
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)

    for relative, content in spec.get("files", {}).items():
        target = _inside(case_dir, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


def command_argv(spec: dict, command: dict) -> list[str]:
    """The argv to execute: the command, under the MPI launcher when it is parallel."""
    argv = [str(part) for part in command["argv"]]
    if command.get("parallel"):
        return [*spec["mpi_launcher"], *argv]
    return argv


def run_commands(spec: dict, case_dir: Path, environment: dict[str, str]) -> int:
    """Run the commands in order, appending to the step's logs; stop at the first failure."""
    stopping = False

    def forward(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, forward)
    with open(spec["stdout"], "ab") as stdout, open(spec["stderr"], "ab") as stderr:

        def run(argv: list[str]) -> int:
            process = subprocess.Popen(
                argv,
                cwd=case_dir,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
            return _wait(process)

        code = run(["/bin/bash", spec["start_script"]]) if spec.get("start_script") else 0
        for command in spec["commands"] if code == 0 else []:
            if stopping:
                code = 128 + signal.SIGTERM
                break
            code = run(with_environment_script(spec, command_argv(spec, command)))
            if code != 0:
                break
        if spec.get("stop_script"):
            run(["/bin/bash", spec["stop_script"]])
    return code


def with_environment_script(spec: dict, argv: list[str]) -> list[str]:
    """Prefix argv so that bash sources the environment script, then execs argv unchanged.

    The script's path and argv travel as positional parameters, never inside the -c text.
    """
    if not spec.get("environment_script"):
        return argv
    return ["/bin/bash", "-c", 'source "$0" && exec "$@"', spec["environment_script"], *argv]


def _wait(process: subprocess.Popen) -> int:
    """Wait for a child, surviving interrupted waits, and return a shell-style exit code."""
    while True:
        try:
            code = process.wait()
            break
        except InterruptedError:
            continue
    return code if code >= 0 else 128 - code


def reap_leftovers(spec: dict) -> None:
    """Kill whatever the step's commands left running, so that nothing outlives the step."""
    if spec.get("reap_own_uid"):
        # The step has a uid of its own: kill(-1) reaches every process of it but this one.
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        return

    own_group, own_pid = os.getpgrp(), os.getpid()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != own_pid:
            _kill_if_in_group(int(entry.name), own_group)


def _kill_if_in_group(pid: int, group: int) -> None:
    """Kill a process if it belongs to the given process group."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if int(fields[2]) == group:
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        return


def write_exit_code(path: Path, code: int) -> None:
    """Record the exit code so that it appears whole or not at all."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(str(code))
    os.replace(temporary, path)


def record_pid(path: Path) -> None:
    """Leave this runner's PID beside its exit file, so that the step is never started twice."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(str(os.getpid()))
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    """Run the step described by the spec file named on the command line."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    record_pid(Path(spec["exit_file"]).parent / "runner.pid")
    case_dir = Path(spec["case_dir"]).resolve()
    environment = dict(spec["environment"])

    try:
        prepare_case(spec, case_dir)
        code = run_commands(spec, case_dir, environment)
    except (OSError, ValueError) as error:
        with open(spec["stderr"], "a") as stderr:
            stderr.write(f"epic: the step could not run: {error}\n")
        code = 127
    reap_leftovers(spec)
    write_exit_code(Path(spec["exit_file"]), code)
    return code


if __name__ == "__main__":
    sys.exit(main())
