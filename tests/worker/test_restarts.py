"""A server killed with SIGKILL loses no job and no result of the local queue once restarted.

Each test runs `epic serve` on a fresh EPIC_HOME, kills it by its PID at a chosen moment of a
job's life, starts it again on the same state and checks over HTTP that the job ended as its
step did, that the step ran exactly once (by the ledger its script appends to), and that its
results are in the data store.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections import Counter

import pytest

from tests.faults import (
    Installation,
    md5_hex,
    patterned,
    script_job,
    script_jobs,
    served_installation,  # noqa: F401 (the installation fixture)
    step_statuses,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUEUE = "local"
MEGABYTE = 2**20
# A queue of this machine with cores enough to start a whole burst of steps in one pass.
WIDE_QUEUE = "wide"
BURST = 20
# How many steps of a burst have run when the server is killed, and how often that is tried.
RUNS_BEFORE_KILL = 3
ATTEMPTS = 8


def test_job_killed_while_staging_in_is_staged_in_again(installation):
    parts = {
        f"big/part-{index}.bin": patterned(f"part {index}", 64 * MEGABYTE) for index in "0123"
    }
    script = "md5sum part-*.bin > sums.txt\n" + installation.note("ran big")
    installation.upload({**parts, "big/run.sh": script.encode()})

    job_id = installation.submit(script_job("big", QUEUE))
    installation.wait_for_job(job_id, lambda job: job["status"] == "Staging In", "staged in")
    installation.kill()
    assert f"Job {job_id}: staged in" not in installation.log()
    installation.start()
    job = installation.wait_until_finished([job_id])[job_id]

    assert f"Job {job_id}: stage-in was interrupted; it will be redone" in installation.log()
    assert (job["status"], job["job_steps"][0]["exit_code"]) == ("Job Complete", 0)
    assert installation.ledger_lines() == ["ran big"]
    assert installation.download("big/sums.txt").decode() == "".join(
        f"{md5_hex(content)}  {path.removeprefix('big/')}\n"
        for path, content in sorted(parts.items())
    )


@pytest.mark.parametrize("exit_code", [0, 3])
@pytest.mark.parametrize("step_ends", ["after the restart", "while the server is down"])
def test_step_running_when_the_server_is_killed_ends_with_its_own_exit_code(
    installation, exit_code, step_ends
):
    script = (
        installation.note("started case")
        + installation.wait_for_release()
        + "echo result > result.txt\n"
        + installation.note("ended case")
        + f"exit {exit_code}\n"
    )
    job_id = installation.submit_script("case", script, QUEUE)
    installation.wait_for_ledger("started case")
    runner = installation.job(job_id)["job_steps"][0]["local_job_id"]

    installation.kill()
    if step_ends == "while the server is down":
        installation.release()
        installation.wait_for_ledger("ended case")
    installation.start()
    installation.release()
    job = installation.wait_until_finished([job_id])[job_id]

    step = job["job_steps"][0]
    assert job["status"] == ("Job Complete" if exit_code == 0 else "Job Failed")
    assert step["status"] == ("Step Complete" if exit_code == 0 else "Step Failed")
    assert (step["exit_code"], step["local_job_id"]) == (exit_code, runner)
    assert installation.ledger_lines() == ["started case", "ended case"]
    assert installation.download("case/result.txt") == b"result\n"


def test_steps_waiting_for_cores_when_the_server_is_killed_run_once(installation):
    cores = len(os.sched_getaffinity(0))
    names = [f"case{index}" for index in range(cores + 1)]
    script = "{note}" + installation.wait_for_release() + "echo {name} > result.txt\n"
    job_ids = [
        installation.submit_script(
            name, script.format(note=installation.note(f"ran {name}"), name=name), QUEUE
        )
        for name in names
    ]
    _wait_for_runs(installation, {f"ran {name}" for name in names}, cores)
    waiting = next(
        job_id
        for name, job_id in zip(names, job_ids, strict=True)
        if f"ran {name}" not in installation.ledger_lines()
    )
    installation.wait_for_job(
        waiting,
        lambda job: (job["status"], step_statuses(job)) == ("Running", ["Queued"]),
        "waited for cores",
    )

    installation.kill()
    installation.start()
    installation.release()
    jobs = installation.wait_until_finished(job_ids)

    assert {job["status"] for job in jobs.values()} == {"Job Complete"}
    assert sorted(installation.ledger_lines()) == [f"ran {name}" for name in names]
    for name in names:
        assert installation.download(f"{name}/result.txt") == f"{name}\n".encode()


def test_job_killed_while_staging_out_is_staged_out_again(installation):
    writes = "".join(
        f"yes 'out {index}' | head -c {50 * MEGABYTE} > out-{index}.txt\n" for index in "0123"
    )
    job_id = installation.submit_script("case", writes + installation.note("ran case"), QUEUE)

    installation.wait_for_job(job_id, lambda job: job["status"] == "Staging Out", "staged out")
    installation.kill()
    assert f"Job {job_id}: staged out" not in installation.log()
    installation.start()
    job = installation.wait_until_finished([job_id])[job_id]

    assert job["status"] == "Job Complete"
    assert installation.ledger_lines() == ["ran case"]
    stored = installation.stored("case/")
    for index in "0123":
        expected = patterned(f"out {index}", 50 * MEGABYTE)
        assert stored[f"out-{index}.txt"]["Size"] == len(expected)
        assert stored[f"out-{index}.txt"]["ETag"] == f'"{md5_hex(expected)}"'


def test_step_started_but_not_yet_recorded_when_the_server_is_killed_runs_once(installation):
    _add_wide_queue(installation)

    for attempt in range(ATTEMPTS):
        names = [f"try{attempt}-{index}" for index in range(BURST)]
        job_ids, unrecorded = _kill_while_a_burst_starts(installation, names)
        installation.wait_until_finished(job_ids)
        if unrecorded:
            break
    else:
        pytest.skip("the kill never landed between a step's start and its record")

    runs = Counter(installation.ledger_lines())
    assert {name: runs[f"ran {name}"] for name in unrecorded} == dict.fromkeys(unrecorded, 1)


def _add_wide_queue(installation: Installation) -> None:
    """Add a queue of this machine that runs a whole burst of steps at once."""
    catalog = installation.home / "wide.yaml"
    catalog.write_text(
        textwrap.dedent(
            f"""
            queues:
              - queue_code: {WIDE_QUEUE}
                cluster: local
                max_allocation: {BURST}
                cpus: 1
                cores_per_cpu: {BURST}
            applications:
              - product_name: Script
                versions:
                  - app_code: script
                    version: "1"
                    driver: script
                    queues: [{QUEUE}, {WIDE_QUEUE}]
            """
        )
    )
    installation.admin("catalog", "load", str(catalog))


def _kill_while_a_burst_starts(installation: Installation, names: list[str]):
    """Kill the server while it starts a burst of steps; return their jobs and the unrecorded.

    A step is unrecorded when its script ran but the server, restarted without its worker,
    shows it still queued: the server died between starting it and recording that.
    """
    script = "{note}sleep 0.2\n"
    installation.upload(
        {
            f"{name}/run.sh": script.format(note=installation.note(f"ran {name}")).encode()
            for name in names
        }
    )
    job_ids = [job["id"] for job in installation.submit_array(script_jobs(names, WIDE_QUEUE))]
    _wait_for_runs(installation, {f"ran {name}" for name in names}, RUNS_BEFORE_KILL)
    installation.kill()

    installation.start(worker=False)
    ran = set(installation.ledger_lines())
    unrecorded = [
        name
        for name, job_id in zip(names, job_ids, strict=True)
        if f"ran {name}" in ran and step_statuses(installation.job(job_id)) == ["Queued"]
    ]
    installation.stop()
    installation.start()
    return job_ids, unrecorded


def _wait_for_runs(installation: Installation, lines: set[str], count: int) -> None:
    """Wait, polling the ledger closely, until `count` of these lines are in it."""
    deadline = time.monotonic() + 60
    while len(lines & set(installation.ledger_lines())) < count:
        assert time.monotonic() < deadline, installation.log()[-4000:]
        time.sleep(0.002)
