"""The worker's Slurm commands per minute while N of its jobs wait in Slurm, for N = 10, 100, 1000.

Starts `epic serve` on a fresh EPIC_HOME with a Slurm queue (partition `debug` unless
--partition says otherwise) and a PATH whose first folder holds a shim: executables named
sbatch, squeue, sacct, scancel, scontrol and sinfo that append their arguments, with a
timestamp, to a log and then exec the real command. A blocker job (submitted by the benchmark
itself, not through the server) takes all the cores of the partition's node, so that every
job submitted through the API stays PENDING. Then, for each N in turn, jobs are added through
the API (one-step script jobs running `sleep 600`, in as few POSTs as allowed) until N are
queued; once squeue shows all N, and after a few seconds for the worker to settle, the shim's
log is read over a window (60 s by default) and the calls of each command are printed per
minute. The jobs accumulate: the N = 1000 window has the 1000 jobs of all three rounds.

Target: flat, not growing with N. All jobs are cancelled by id at the end, the server is
stopped by its PID and the temporary folder removed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import _slurm

SIZES = (10, 100, 1000)
WINDOW = 60.0
# After the last job is queued, the worker's pass that submitted it still runs on, and the next
# passes do each new step's first charge and log read: let that pass before counting.
SETTLE = 5.0
SCRIPT = "sleep 600\n"
QUEUE_TIMEOUT = 1800.0


def sizes_up_to(largest: int) -> list[int]:
    """The Ns to measure: 10, 100 and 1000 up to `largest`, and `largest` itself."""
    return sorted({size for size in SIZES if size < largest} | {largest})


def block_node(folder: Path, partition: str) -> int:
    """Submit a job that holds every core of the partition's node; return its id."""
    cores = _slurm.partition_cores(partition)
    argv = [
        "sbatch",
        "--parsable",
        "--job-name=bench-blocker",
        f"--chdir={folder}",
        "--output=/dev/null",
        f"--partition={partition}",
        "--nodes=1",
        f"--ntasks={cores}",
        "--time=120",
        "--wrap=sleep 7200",
    ]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    job_id = int(output.strip().split(";")[0])
    try:
        _slurm.wait_until(lambda: _slurm.jobs_under(folder, "RUNNING"), timeout=15)
    except TimeoutError:
        print(f"note: the blocker {job_id} is not running (the node is busy): jobs pend anyway")
    return job_id


def steps_queued(home: Path) -> dict[int, str]:
    """The server's step jobs queued in Slurm: id -> state."""
    jobs = _slurm.jobs_under(home)
    return {job_id: state for job_id, (name, state) in jobs.items() if name.startswith("epic-")}


def fill_to(server: _slurm.BenchServer, count: int) -> float:
    """Submit jobs until `count` are queued in Slurm; return the seconds that took."""
    started = time.monotonic()
    _slurm.submit_jobs(server, count - len(steps_queued(server.home)))
    _slurm.wait_until(lambda: len(steps_queued(server.home)) >= count, QUEUE_TIMEOUT, 0.5)
    return time.monotonic() - started


def measure_window(log: Path, window: float) -> tuple[dict[str, float], list[tuple]]:
    """Calls per minute of each Slurm command over the next `window` seconds, and the calls."""
    time.sleep(SETTLE)
    since = time.time()
    time.sleep(window)
    calls = _slurm.shim_calls(log, since, since + window)
    counts = _slurm.count_by_command(calls)
    per_minute = {command: counts.get(command, 0) * 60.0 / window for command in counts}
    return per_minute, calls


def describe(count: int, states: dict[int, str], per_minute: dict, calls: list[tuple]) -> str:
    """One N's figures as lines of text."""
    waiting = sum(1 for state in states.values() if state == "PENDING")
    lines = [f"N = {count} ({waiting} PENDING in Slurm):"]
    for command in _slurm.SLURM_COMMANDS:
        lines.append(f"  {command:8} {per_minute.get(command, 0.0):7.1f} /min")

    # Each worker pass that watches steps asks squeue about all of them in one call.
    refreshes = [stamp for stamp, command, arguments in calls if "--jobs=" in arguments]
    gaps = [later - earlier for earlier, later in pairwise(refreshes)]
    if gaps:
        lines.append(
            f"  squeue --jobs (one per worker pass): {len(refreshes)}; between two: "
            f"median {statistics.median(gaps):.2f} s, max {max(gaps):.2f} s"
        )
    return "\n".join(lines)


def run(folder: Path, partition: str, largest: int, window: float) -> list[str]:
    """Block the node, start the server behind the shim, and describe each N's window."""
    (folder / "blocker").mkdir()
    blocker = block_node(folder / "blocker", partition)
    try:
        _slurm.write_shim(folder / "shim", folder / "slurm-calls.log")
        (folder / "home").mkdir()
        server = _slurm.start_bench_server(
            folder / "home", partition, SCRIPT, path_prefix=folder / "shim"
        )
        try:
            return measure_each(server, folder / "slurm-calls.log", largest, window)
        finally:
            _slurm.stop_server(server.process)
            _slurm.cancel_all_under(server.home)
    finally:
        _slurm.cancel_all_under(folder / "blocker", [blocker])


def measure_each(server: _slurm.BenchServer, log: Path, largest: int, window: float) -> list:
    """Fill the queue N by N and describe the window after each."""
    reports = []
    for count in sizes_up_to(largest):
        seconds = fill_to(server, count)
        print(f"N = {count}: all queued in Slurm {seconds:.1f} s after the POST", flush=True)
        per_minute, calls = measure_window(log, window)
        reports.append(describe(count, steps_queued(server.home), per_minute, calls))
    return reports


def main() -> None:
    """Measure each N and print the figures again together at the end."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=SIZES[-1], help="the largest N (1000)")
    parser.add_argument("--window", type=float, default=WINDOW, help="seconds counted per N")
    parser.add_argument("--partition", default="debug")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="epic-bench-") as folder:
        # Steps run under their own uids (as root) and must be able to pass through it.
        Path(folder).chmod(0o711)
        reports = run(Path(folder), args.partition, args.jobs, args.window)
    print(f"\nSlurm commands per minute, {args.window:g} s windows (target: flat in N):")
    print("\n".join(reports))


if __name__ == "__main__":
    main()
