"""Wall time to queue a 1,000-job array in Slurm through the API, against a loop of sbatch.

On the real cluster of this machine (partition `debug` unless --partition says otherwise):

1. the baseline: a shell loop of 1,000 `sbatch` calls of a trivial batch script (`sleep 600`)
   with the options the Slurm backend gives a step, timed from its start to its end;
2. the API: `epic serve` on a fresh EPIC_HOME with a Slurm queue, epic://bench/run.sh
   (`sleep 600`) uploaded, then ONE job array of 1,000 one-step script jobs POSTed to
   /api/v2/job/ (1,000 is the most one request may carry: JobArraySpecSerializer caps `jobs`
   at 1,000), timed from the POST until the last of the 1,000 sbatch calls returned (the
   server logs each job id sbatch printed), which is when the loop's time ends too; then
   squeue must show all 1,000 steps' jobs (`epic-step-*`, working under that EPIC_HOME)
   pending or running, or the run fails.

While the API path runs, the benchmark reads the server's log, not squeue: an squeue of a
thousand jobs every quarter of a second holds the controller's job lock and slowed the
submissions it measured (the loop was never watched that way). `--watch-squeue` brings back
that way of timing (until squeue shows all, polled every SQUEUE_INTERVAL) for comparison.

The jobs sleep 600 s, so that with the node's few cores nearly all of them stay queued. Each
part's jobs are cancelled by id when it ends. The loop runs first, so the API part meets a
controller that still remembers 1,000 cancelled jobs (MinJobAge); that can only slow the API.

Prints both wall times and their ratio (target: the API path at most 1.5 times the loop), and
the API path's phases: the POST itself; all jobs out of Pending in the API (the worker has
claimed them for stage-in); all staged in and first/last sbatch (from the server's log); all
in squeue. With --trace the server runs with a PATH shim that records every Slurm command,
and the calls per job are printed too (the shim adds about 1 ms to each command); with
--keep-logs the server's log (set EPIC_LOG_LEVEL=DEBUG for every command) and the trace are
kept for reading.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import _slurm

JOBS = 1000
SCRIPT = "sleep 600\n"
# How long either part may take before the benchmark gives up.
PART_TIMEOUT = 1800.0
# How often squeue is asked while the API path runs; the API is asked less often, because
# listing a large array takes the server's time away from its worker.
SQUEUE_INTERVAL = 0.25
API_INTERVAL = 1.0
# What the server logs when sbatch has printed a step's job id.
SUBMITTED = " submitted as Slurm job "


def loop_options(folder: Path, partition: str) -> str:
    """sbatch's options in the loop: those the backend gives a one-task, one-hour step."""
    return (
        f"--parsable --job-name=bench-loop-$i --chdir={folder} --output=/dev/null "
        "--nodes=1 --ntasks=1 --ntasks-per-node=1 --cpus-per-task=1 --time=60 --no-requeue "
        f"--partition={partition}"
    )


def measure_loop(folder: Path, count: int, partition: str) -> float:
    """Queue `count` jobs with a shell loop of sbatch; return its seconds, then cancel them."""
    folder.mkdir()
    script = folder / "run.sh"
    script.write_text(f"#!/bin/bash\n{SCRIPT}")
    loop = f"for i in $(seq {count}); do sbatch {loop_options(folder, partition)} {script}; done"

    ids: list[int] = []
    try:
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "-c", loop], capture_output=True, text=True, timeout=PART_TIMEOUT
        )
        seconds = time.monotonic() - started
        ids = [int(line.split(";")[0]) for line in done.stdout.split()]
        if len(ids) != count:
            raise RuntimeError(f"the loop queued {len(ids)} of {count}: {done.stderr[-500:]}")
    finally:
        _slurm.cancel_all_under(folder, ids)
    return seconds


def newest_job_left_pending(server: _slurm.BenchServer, array: int) -> bool:
    """Whether the array's newest job (the worker claims oldest first) is out of Pending."""
    page = server.api("GET", f"/job/?job_array={array}&limit=1")
    return page["results"][0]["status"] != "Pending"


def all_left_pending(server: _slurm.BenchServer, array: int, count: int) -> bool:
    """Whether none of the array's jobs is Pending in the API any more."""
    page = server.api("GET", f"/job/?job_array={array}&limit={count}")
    return not any(job["status"] == "Pending" for job in page["results"])


def follow(
    server: _slurm.BenchServer, array: int, count: int, started: float, watch_squeue: bool
) -> dict:
    """Wait until all jobs are queued in Slurm; return when each phase ended.

    Without `watch_squeue`, the end is the last sbatch done (read from the log) and squeue is
    asked once, to confirm; with it, squeue is polled until it shows every job.
    """
    phases: dict[str, float] = {}
    api_asked = 0.0
    deadline = started + PART_TIMEOUT
    log = _slurm.LogFollower(server.home / "server.log", SUBMITTED)
    while "all in squeue" not in phases:
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"not all queued after {PART_TIMEOUT:g} s: {phases}")
        left = "all out of Pending in the API" in phases
        if not left and now - api_asked >= API_INTERVAL:
            api_asked = now
            # The cheap look first; the whole list only to confirm.
            if newest_job_left_pending(server, array) and all_left_pending(server, array, count):
                phases["all out of Pending in the API"] = now - started
        if watch_squeue or log.count() >= count:
            if len(_slurm.jobs_under(server.home)) >= count:
                phases["all in squeue"] = time.monotonic() - started
            elif not watch_squeue:
                raise RuntimeError("the log shows every sbatch done, but squeue does not")
        time.sleep(SQUEUE_INTERVAL)
    if "all out of Pending in the API" not in phases:
        phases["all out of Pending in the API"] = phases["all in squeue"]
    return phases


def phases_from_log(home: Path, epoch: float) -> dict[str, float]:
    """Seconds from the POST to the worker's milestones, read from the server's log."""
    log = home / "server.log"
    staged = _slurm.log_times(log, ": staged in ")
    submitted = _slurm.log_times(log, " submitted as Slurm job ")
    found = {}
    if staged:
        found["first staged in (log)"] = staged[0] - epoch
        found["all staged in (log)"] = staged[-1] - epoch
    if submitted:
        found["first sbatch done (log)"] = submitted[0] - epoch
        found["last sbatch done (log)"] = submitted[-1] - epoch
    return found


def measure_api(
    home: Path,
    count: int,
    partition: str,
    trace: bool,
    keep_logs: Path | None,
    watch_squeue: bool,
) -> dict:
    """Queue `count` jobs through the API; return the phases, then cancel and stop."""
    shim = home / "shim" if trace else None
    if shim is not None:
        _slurm.write_shim(shim, home / "slurm-calls.log")
    server = _slurm.start_bench_server(home, partition, SCRIPT, path_prefix=shim)
    jobs: list[dict] = []
    try:
        epoch, started = time.time(), time.monotonic()
        jobs = _slurm.submit_jobs(server, count)
        phases = {"POST": time.monotonic() - started}
        phases |= follow(server, jobs[0]["array"], count, started, watch_squeue)
        phases |= phases_from_log(home, epoch)
        phases["queued"] = phases["all in squeue" if watch_squeue else "last sbatch done (log)"]
        if trace:
            calls = _slurm.shim_calls(home / "slurm-calls.log", since=epoch)
            phases["calls"] = _slurm.count_by_command(calls)
    finally:
        _slurm.stop_server(server.process)
        known = [job["job_steps"][0]["local_job_id"] for job in jobs]
        _slurm.cancel_all_under(home, [job_id for job_id in known if job_id])
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in ("server.log", "slurm-calls.log"):
                if (home / log).exists():
                    shutil.copy(home / log, keep_logs / log)
    return phases


def report(count: int, loop_seconds: float, api: dict) -> None:
    """Print both wall times, their ratio, the API path's phases and any traced calls."""
    api_seconds = api["queued"]
    ratio = api_seconds / loop_seconds
    print(f"{count} jobs queued in Slurm:")
    print(f"  sbatch loop:  {loop_seconds:8.2f} s  ({count / loop_seconds:6.1f} jobs/s)")
    print(f"  API (1 POST): {api_seconds:8.2f} s  ({count / api_seconds:6.1f} jobs/s)")
    verdict = "met" if ratio <= 1.5 else "MISSED"
    print(f"  ratio API / loop: {ratio:.2f} (target: at most 1.5; {verdict})")
    print("API path, seconds from the first POST:")
    for name, seconds in sorted(
        (
            (name, value)
            for name, value in api.items()
            if isinstance(value, float) and name != "queued"
        ),
        key=lambda item: item[1],
    ):
        print(f"  {name:32} {seconds:8.2f}")
    if "calls" in api:
        calls = ", ".join(f"{name} {number}" for name, number in sorted(api["calls"].items()))
        print(f"Slurm commands the server ran: {calls}")
        per_job = {name: number / count for name, number in api["calls"].items()}
        print("  per job: " + ", ".join(f"{name} {ratio:.2f}" for name, ratio in per_job.items()))


def main() -> None:
    """Measure the loop, then the API path, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS, help="jobs in the array (default 1000)")
    parser.add_argument("--partition", default="debug")
    parser.add_argument("--trace", action="store_true", help="record the server's Slurm calls")
    parser.add_argument(
        "--keep-logs", type=Path, help="copy the server's log (and the trace) to this folder"
    )
    parser.add_argument(
        "--watch-squeue",
        action="store_true",
        help="time the API path until squeue, polled, shows every job",
    )
    args = parser.parse_args()

    if not 0 < args.jobs <= _slurm.JOBS_PER_REQUEST:
        parser.error(f"--jobs: one array of 1 to {_slurm.JOBS_PER_REQUEST} jobs")

    with tempfile.TemporaryDirectory(prefix="epic-bench-") as folder:
        # Steps run under their own uids (as root) and must be able to pass through it.
        Path(folder).chmod(0o711)
        loop_seconds = measure_loop(Path(folder) / "loop", args.jobs, args.partition)
        home = Path(folder) / "home"
        home.mkdir()
        api = measure_api(
            home, args.jobs, args.partition, args.trace, args.keep_logs, args.watch_squeue
        )
    report(args.jobs, loop_seconds, api)


if __name__ == "__main__":
    main()
