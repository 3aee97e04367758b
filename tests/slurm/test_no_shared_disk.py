"""Slurm steps reach the server over HTTP only: nothing on the compute node touches its disk."""

from __future__ import annotations

import ast
import json
import subprocess
import time

from rest_framework.test import APIClient

from epic.compute.base import RunState
from epic.compute.slurm import accounts
from epic.compute.slurm import backend as backend_module
from epic.compute.slurm.backend import job_name
from epic.data.paths import user_prefix
from epic.data.services import object_store
from epic.jobs.models import Job, JobStep
from epic.jobs.states import JobState
from tests.helpers import finished, run_until
from tests.slurm.conftest import wait_for_state, wait_until_ended


def squeue_field(job_id: int, field: str) -> str:
    """One field of a job as squeue shows it."""
    argv = ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", f"--Format={field}:|"]
    printed = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return printed.strip().removesuffix("|")


def shell(*lines: str) -> list[dict]:
    """Plan commands running shell lines."""
    return [{"argv": ["/bin/bash", "-c", line]} for line in lines]


def wait_for_stdout(backend, launch, text: str, timeout: float = 30.0) -> None:
    """Wait until the server's copy of the step's stdout holds `text`."""
    deadline = time.monotonic() + timeout
    while text not in backend.read_logs(launch, 4000)[0]:
        assert time.monotonic() < deadline, f"{text!r} never arrived"
        time.sleep(0.2)


def test_node_is_given_no_server_path(backend, launch_for, commands, settings):
    launch = launch_for(1, "echo hello")

    job_id = backend.start(launch)
    wait_for_state(backend, launch, job_id, RunState.EXITED)

    home = str(settings.EPIC_HOME)
    sbatch = next(argv for argv in commands.calls if argv[0] == "sbatch")
    # The last argument is the batch script's path, which sbatch reads on the server.
    assert [option for option in sbatch[:-1] if home in option] == []
    assert home not in (launch.step_dir / "batch.py").read_text()
    assert home not in (launch.step_dir / "bundle.json").read_text()
    assert squeue_field(job_id, "WorkDir") == settings.EPIC_SLURM_SCRATCH
    assert backend.read_logs(launch, 1000)[0] == "hello\n"


def test_step_runs_where_the_servers_disk_is_unreachable(
    backend, launch_for, commands, installation
):
    launch = launch_for(1)
    (launch.case_dir / "input.txt").write_text("input from the server\n")
    (launch.case_dir / "old.txt").write_text("deleted on the node\n")
    launch.plan["commands"] = shell(
        f"cat {launch.case_dir}/input.txt || echo server disk unreachable",
        "id -u; cat input.txt",
        "echo result > output.txt; rm old.txt; echo to stderr >&2",
    )
    # The job runs under its team's account; the job's folder on the server is closed to it.
    launch.case_dir.parent.chmod(0o700)
    team_uid = accounts.account_of(launch.team_id).uid

    job_id = backend.start(launch)
    status = wait_for_state(backend, launch, job_id, RunState.EXITED)

    stdout, stderr = backend.read_logs(launch, 4000)
    assert status.exit_code == 0
    assert stdout == f"server disk unreachable\n{team_uid}\ninput from the server\n"
    assert "Permission denied" in stderr
    assert "to stderr\n" in stderr
    assert sorted(path.name for path in launch.case_dir.iterdir()) == ["input.txt", "output.txt"]
    assert (launch.case_dir / "output.txt").read_text() == "result\n"
    assert (launch.step_dir / "scheduler_job_id").read_text() == str(job_id)
    wait_until_ended([job_id])
    assert list(installation.iterdir()) == []


def test_batch_script_token_is_spent_once_the_step_started(backend, launch_for):
    launch = launch_for(1, "echo started; sleep 5")
    job_id = backend.start(launch)
    wait_for_stdout(backend, launch, "started\n")

    script = subprocess.run(
        ["scontrol", "write", "batch_script", str(job_id), "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    settings_line = script.split("STEP = json.loads(", 1)[1].split(")\n", 1)[0]
    step = json.loads(ast.literal_eval(settings_line))
    answer = put_scheduler_job(launch.step_id, step["token"], job_id)

    assert answer == 403
    assert wait_for_state(backend, launch, job_id, RunState.EXITED).exit_code == 0


def put_scheduler_job(step_id: int, token: str, job_id: int) -> int:
    """The status of a bootstrap exchange attempted with a token read from a batch script."""
    answer = APIClient().generic(
        "PUT",
        f"/internal/steps/{step_id}/scheduler-job/",
        str(job_id).encode(),
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    return answer.status_code


def test_stdout_arrives_while_the_step_runs_and_whole_at_the_end(backend, launch_for):
    launch = launch_for(1, "echo first", "sleep 8", "seq 1 300000", "echo last")
    job_id = backend.start(launch)

    wait_for_stdout(backend, launch, "first\n")
    while_running = backend.status(launch, job_id)
    status = wait_for_state(backend, launch, job_id, RunState.EXITED, timeout=60)

    assert while_running.state == RunState.RUNNING
    assert status.exit_code == 0
    numbers = [f"{number}\n" for number in range(1, 300001)]
    assert list(backend.stdout_lines(launch)) == ["first\n", *numbers, "last\n"]


def test_cancelled_step_sends_back_what_it_produced(backend, launch_for):
    stopping = "echo stopping; echo partial > partial.txt; exit 143"
    launch = launch_for(1, f"echo started; trap '{stopping}' TERM; sleep 60 & wait")
    job_id = backend.start(launch)
    wait_for_stdout(backend, launch, "started\n")

    backend.stop(launch, job_id)
    status = wait_for_state(backend, launch, job_id, RunState.EXITED)

    # The step was still running until its results were back: the exit code came last.
    assert (launch.step_dir / "exit").read_text() == "143"
    assert status.exit_code == 143
    assert backend.read_logs(launch, 1000)[0] == "started\nstopping\n"
    assert (launch.case_dir / "partial.txt").read_text() == "partial\n"


def test_server_unreachable_at_the_end_fails_the_job_with_a_message(
    backend, launch_for, step_io_server, installation, monkeypatch
):
    monkeypatch.setattr(backend_module, "RETRY_SECONDS", 2.0)
    launch = launch_for(1, "echo started; sleep 3")
    job_id = backend.start(launch)
    wait_for_stdout(backend, launch, "started\n")

    step_io_server.stop()
    status = wait_for_state(backend, launch, job_id, RunState.EXITED, timeout=60)

    assert (status.exit_code, status.reason) == (1, "FAILED")
    assert not (launch.step_dir / "exit").exists()
    (output,) = installation.glob(f"{job_name(launch.step_id)}-*.out")
    message = output.read_text()
    assert f"epic: step {launch.step_id} ended without reporting to " in message
    kept = [path for path in installation.iterdir() if path.is_dir()]
    assert f"what the step produced is kept in {kept[0]}" in message


def test_results_written_on_the_node_are_staged_out(alice, submit_to_slurm, worker):
    job_id = submit_to_slurm("case", "echo computed > result.txt\nrm run.sh\n")

    run_until(worker, finished(job_id))

    assert Job.objects.get(pk=job_id).state == JobState.COMPLETE
    assert JobStep.objects.get(job_id=job_id).exit_code == 0
    with object_store().open(user_prefix(alice.user) + "case/result.txt") as stream:
        assert stream.read() == b"computed\n"


def test_signal_to_the_batch_script_alone_reaches_the_step(backend, launch_for):
    stopping = "echo stopping; echo partial > partial.txt; exit 143"
    launch = launch_for(1, f"echo started; trap '{stopping}' TERM; sleep 60 & wait", "echo never")
    job_id = backend.start(launch)
    wait_for_stdout(backend, launch, "started\n")

    # Only the wrapper gets this signal: it passes it on to the step runner's process group.
    subprocess.run(["scancel", "--batch", "--signal=TERM", str(job_id)], check=True, timeout=30)
    status = wait_for_state(backend, launch, job_id, RunState.EXITED)

    assert status.exit_code == 143
    assert backend.read_logs(launch, 1000)[0] == "started\nstopping\n"
    assert (launch.case_dir / "partial.txt").read_text() == "partial\n"
