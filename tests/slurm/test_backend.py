"""The Slurm backend against a real one-node cluster: start, watch, stop, logs and recovery."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from epic.compute.base import RunState
from epic.compute.slurm import SlurmBackend
from epic.compute.slurm.backend import job_name
from epic.compute.slurm.commands import (
    CommandResult,
    SlurmError,
    SlurmUnavailable,
    run_command,
)
from tests.slurm.conftest import wait_for_state


def squeue_field(job_id: int, field: str) -> str:
    """One field of a job as squeue shows it."""
    argv = ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", f"--Format={field}:|"]
    printed = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return printed.strip().removesuffix("|")


def test_step_runs_and_its_logs_and_exit_code_are_read(backend, launch_for, settings):
    launch = launch_for(1, "echo hello from slurm", "echo to stderr >&2")

    job_id = backend.start(launch)
    status = wait_for_state(backend, launch, job_id, RunState.EXITED)

    assert status.exit_code == 0
    assert status.reason in ("COMPLETED", "COMPLETING", "RUNNING")
    assert backend.read_logs(launch, 1000) == ("hello from slurm\n", "to stderr\n")
    assert list(backend.stdout_lines(launch)) == ["hello from slurm\n"]
    assert squeue_field(job_id, "Name") == job_name(launch.step_id)
    assert squeue_field(job_id, "WorkDir") == settings.EPIC_SLURM_SCRATCH


def test_failing_step_reports_its_exit_code(backend, launch_for):
    launch = launch_for(1, "echo broken >&2; exit 3", "echo never")

    job_id = backend.start(launch)
    status = wait_for_state(backend, launch, job_id, RunState.EXITED)

    assert status.exit_code == 3
    assert backend.read_logs(launch, 1000) == ("", "broken\n")


def test_sbatch_asks_for_the_steps_tasks_and_time_limit(backend, launch_for, commands):
    launch = launch_for(1, "sleep 30", num_tasks=2, hours=3)

    job_id = backend.start(launch)

    assert squeue_field(job_id, "NumTasks") == "2"
    assert squeue_field(job_id, "TimeLimit") == "3:00:00"
    assert squeue_field(job_id, "Partition") == backend.partition
    sbatch = next(argv for argv in commands.calls if argv[0] == "sbatch")
    assert "--ntasks=2" in sbatch
    assert "--cpus-per-task=1" in sbatch
    assert "--time=180" in sbatch


def test_parallel_command_runs_its_ranks_under_srun_with_pmix(backend, launch_for):
    launch = launch_for(1, num_tasks=2)
    rank = {"argv": ["/bin/bash", "-c", "echo rank $PMIX_RANK of $SLURM_NTASKS"], "parallel": True}
    launch.plan["commands"] = [rank]

    job_id = backend.start(launch)
    status = wait_for_state(backend, launch, job_id, RunState.EXITED)

    assert status.exit_code == 0
    assert sorted(backend.stdout_lines(launch)) == ["rank 0 of 2\n", "rank 1 of 2\n"]


def test_step_cancelled_while_pending_never_runs(backend, launch_for):
    too_big = backend.cores_per_node + 1
    launch = launch_for(1, "echo ran > ran.txt", num_tasks=too_big)

    job_id = backend.start(launch)
    waiting = wait_for_state(backend, launch, job_id, RunState.WAITING)
    backend.stop(launch, job_id)
    ended = wait_for_state(backend, launch, job_id, RunState.EXITED)

    assert squeue_field(job_id, "State") == "CANCELLED"
    assert waiting.reason is not None
    assert ended.exit_code == 143
    assert ended.reason == "CANCELLED"
    assert not (launch.case_dir / "ran.txt").exists()


def test_step_cancelled_while_running_records_sigterm(backend, launch_for):
    launch = launch_for(1, "echo started; sleep 60")
    job_id = backend.start(launch)
    _wait_for_stdout(backend, launch, "started")

    stopped_at = time.monotonic()
    backend.stop(launch, job_id)
    status = wait_for_state(backend, launch, job_id, RunState.EXITED)

    assert status.exit_code == 143
    assert time.monotonic() - stopped_at < 10


def test_stop_reaches_slurm_once_per_request(backend, launch_for, commands):
    launch = launch_for(1, "echo started; sleep 60")
    job_id = backend.start(launch)
    _wait_for_stdout(backend, launch, "started")

    backend.stop(launch, job_id)
    backend.stop(launch, job_id)
    backend.stop(launch, job_id, force=True)
    backend.stop(launch, job_id, force=True)
    status = wait_for_state(backend, launch, job_id, RunState.EXITED)

    scancels = [argv for argv in commands.calls if argv[0] == "scancel"]
    assert scancels == [
        ["scancel", f"--name={job_name(launch.step_id)}", str(job_id)],
        ["scancel", f"--name={job_name(launch.step_id)}", "--signal=KILL", "--full", str(job_id)],
    ]
    assert status.exit_code == 143


def test_forced_stop_of_a_pending_step_cancels_it(backend, launch_for):
    launch = launch_for(1, "true", num_tasks=backend.cores_per_node + 1)
    job_id = backend.start(launch)

    backend.stop(launch, job_id, force=True)
    status = wait_for_state(backend, launch, job_id, RunState.EXITED)

    assert (status.exit_code, status.reason) == (143, "CANCELLED")


@pytest.mark.slow
def test_slurm_time_limit_ends_a_step(backend, launch_for):
    launch = launch_for(1, "echo started; sleep 300")
    job_id = backend.start(launch)
    _wait_for_stdout(backend, launch, "started")

    # Slurm's limits count whole minutes: shorten this job's hour to the shortest one.
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=1"], check=True)
    status = wait_for_state(backend, launch, job_id, RunState.EXITED, timeout=150)

    assert status.exit_code == 143
    # The runner records its exit code while Slurm still completes the job (with its reason).
    assert status.reason in ("TIMEOUT", "TimeLimit")
    assert "DUE TO TIME LIMIT" in backend.read_logs(launch, 4000)[1]


def test_sbatch_timing_out_after_queuing_leaves_one_job(backend, launch_for, commands):
    launch = launch_for(1, "sleep 30")
    commands.sbatch_times_out = True

    first = backend.start(launch)
    again = backend.start(launch)

    assert commands.count("sbatch") == 1
    assert first == again == commands.submitted[0]
    assert _jobs_named(job_name(launch.step_id)) == [first]


def test_sbatch_timing_out_before_queuing_leaves_the_step_to_try_again(backend, launch_for):
    launch = launch_for(1, "true")

    def times_out(argv, timeout):
        if argv[0] == "sbatch":
            raise subprocess.TimeoutExpired(argv, timeout)
        return run_command(argv, timeout)

    with pytest.raises(SlurmUnavailable):
        SlurmBackend(backend.partition, backend.cores_per_node, run=times_out).start(launch)
    assert _jobs_named(job_name(launch.step_id)) == []


def test_sbatch_refusal_fails_the_start_with_its_message(launch_for, commands):
    refusing = SlurmBackend(partition="no-such-partition", cores_per_node=2, run=commands)

    with pytest.raises(SlurmError, match="invalid partition"):
        refusing.start(launch_for(1, "true"))


def test_start_after_a_lost_answer_adopts_the_steps_job(backend, launch_for, commands, node_shape):
    launch = launch_for(1, "sleep 30")
    first = backend.start(launch)

    # A new worker (a new backend) starts the step again: it finds the job by its tag.
    partition, cpus = node_shape
    restarted = SlurmBackend(partition=partition, cores_per_node=cpus, run=commands)

    assert restarted.start(launch) == first
    assert commands.count("sbatch") == 1


def test_a_job_of_another_user_under_the_steps_name_is_not_adopted(backend, launch_for, commands):
    launch = launch_for(1, "sleep 30")
    # A marked step, as when a worker died between writing the batch script and sbatch.
    launch.step_dir.mkdir(parents=True)
    (launch.step_dir / "batch.py").write_text("#!/bin/sh\n")
    argv = ["sbatch", "--parsable", "--uid=65534", "--gid=65534", "--output=/dev/null"]
    argv += ["--chdir=/", f"--job-name={job_name(launch.step_id)}", "--wrap=sleep 30"]
    planted = int(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    commands.submitted.append(planted)

    job_id = backend.start(launch)

    assert job_id != planted
    assert commands.count("sbatch") == 1


def test_each_submission_names_its_slurm_output_with_a_nonce_in_the_script(
    backend, launch_for, commands
):
    launch = launch_for(1, "true")
    outputs = []
    for _ in range(2):
        job_id = backend.start(launch)
        script = (launch.step_dir / "batch.py").read_text().splitlines()
        outputs.append(json.loads(script[1].removeprefix("#SBATCH --output=")))
        assert squeue_field(job_id, "StdOut") == outputs[-1]
        (launch.step_dir / "batch.py").unlink()  # unmarked: the next start submits again

    # Every user may read sbatch's command line: the output file is not named there.
    assert not [arg for argv in commands.calls for arg in argv if arg.startswith("--output")]
    name = re.escape(job_name(launch.step_id))
    assert all(re.fullmatch(rf".*/{name}-[0-9a-f]{{16}}\.out", output) for output in outputs)
    assert len(set(outputs)) == 2


def test_same_step_id_of_another_installation_is_not_adopted(backend, launch_for, settings):
    launch = launch_for(1, "sleep 30")
    ours = settings.SECRET_KEY
    settings.SECRET_KEY = "the signing key of another installation"
    first = backend.start(launch)
    settings.SECRET_KEY = ours

    assert backend.start(launch) != first


def test_refresh_of_twenty_steps_makes_one_squeue_call(backend, launch_for, commands):
    launches = [launch_for(step_id, "sleep 30") for step_id in range(1, 21)]
    running = [(launch, backend.start(launch)) for launch in launches]
    commands.calls.clear()

    backend.refresh(running)
    states = {backend.status(launch, job_id).state for launch, job_id in running}

    # Two cores: some run, the others wait for resources.
    assert states <= {RunState.RUNNING, RunState.WAITING}
    assert [argv[0] for argv in commands.calls] == ["squeue"]


def test_finished_step_stays_exited_after_slurm_forgets_it(backend, launch_for, commands):
    launch = launch_for(1, "exit 4")
    job_id = backend.start(launch)
    wait_for_state(backend, launch, job_id, RunState.EXITED)
    forgetful = SlurmBackend(backend.partition, backend.cores_per_node, run=_forgetful(commands))

    forgetful.refresh([(launch, job_id)])
    status = forgetful.status(launch, job_id)

    assert (status.state, status.exit_code) == (RunState.EXITED, 4)


def test_job_ended_without_exit_file_is_read_from_the_completion_log(backend, launch_for):
    launch = launch_for(1, "true", num_tasks=backend.cores_per_node + 1)
    job_id = backend.start(launch)
    backend.stop(launch, job_id)
    wait_for_state(backend, launch, job_id, RunState.EXITED)
    recorder = _forgetful(run_command)
    forgetful = SlurmBackend(backend.partition, backend.cores_per_node, run=recorder)

    status = _wait_for_completion_log(forgetful, launch, job_id)

    assert (status.state, status.exit_code, status.reason) == (RunState.EXITED, 143, "CANCELLED")
    assert [argv[0] for argv in recorder.calls] == ["squeue", "sacct"]


def test_job_slurm_no_longer_knows_is_lost(backend, launch_for):
    launch = launch_for(1, "true")
    forgetful = SlurmBackend(backend.partition, backend.cores_per_node, run=_forgetful_of_all())

    status = forgetful.status(launch, 999999)

    assert status.state == RunState.LOST


def test_reused_job_id_is_not_taken_for_the_step(backend, launch_for):
    other_step = launch_for(2, "sleep 30")
    job_id = backend.start(other_step)
    launch = launch_for(1, "true")

    backend.refresh([(launch, job_id)])

    assert backend.status(launch, job_id).state == RunState.LOST


def test_unknown_slurm_state_keeps_the_step_watched(launch_for, caplog):
    launch = launch_for(1, "true")
    line = f"7|{job_name(launch.step_id)}|WEIRD_NEW_STATE|None|0|NONE|NONE|{launch.step_dir}\n"
    backend = SlurmBackend("debug", 2, run=_replaying(line))

    status = backend.status(launch, 7)

    assert (status.state, status.reason) == (RunState.WAITING, "WEIRD_NEW_STATE")
    assert "Unknown Slurm job state 'WEIRD_NEW_STATE'" in caplog.text


def test_silent_controller_keeps_steps_as_they_were(launch_for):
    launch = launch_for(1, "true")

    def times_out(argv, timeout):
        raise subprocess.TimeoutExpired(argv, timeout)

    status = SlurmBackend("debug", 2, run=times_out).status(launch, 7)

    assert status.state == RunState.WAITING
    assert status.reason.startswith("Slurm did not answer")


def test_slurm_decides_capacity(backend):
    assert backend.capacity() is None


# Helpers


def _wait_for_stdout(backend, launch, text: str, timeout: float = 30.0) -> None:
    """Wait until the step's stdout holds `text`."""
    deadline = time.monotonic() + timeout
    while text not in backend.read_logs(launch, 1000)[0]:
        assert time.monotonic() < deadline, f"{text!r} never appeared"
        time.sleep(0.1)


def _wait_for_completion_log(backend, launch, job_id, timeout: float = 10.0):
    """The status of a step once its job reached the completion log (written as it ends)."""
    deadline = time.monotonic() + timeout
    while (status := backend.status(launch, job_id)).state != RunState.EXITED:
        assert time.monotonic() < deadline, f"still {status}"
        time.sleep(0.2)
    return status


def _jobs_named(name: str) -> list[int]:
    """Ids of the jobs squeue shows under a name (which carries the installation id)."""
    argv = ["squeue", "--noheader", "--states=all", f"--name={name}", "--format=%i"]
    lines = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
    return [int(line) for line in lines]


class _Recorder:
    """A seam that records calls and lets a function answer them."""

    def __init__(self, answer):
        self.answer = answer
        self.calls: list[list[str]] = []

    def __call__(self, argv, timeout):
        self.calls.append(list(argv))
        return self.answer(argv, timeout)


def _forgetful(run) -> _Recorder:
    """A seam whose squeue has forgotten every job, as after MinJobAge; the rest is real."""

    def answer(argv, timeout):
        if argv[0] == "squeue":
            return CommandResult(argv, 0, "", "")
        return run(argv, timeout)

    return _Recorder(answer)


def _forgetful_of_all() -> _Recorder:
    """A seam where neither squeue nor the completion log knows any job."""
    return _Recorder(lambda argv, timeout: CommandResult(argv, 0, "", ""))


def _replaying(squeue_output: str) -> _Recorder:
    """A seam that answers every squeue with recorded output."""
    return _Recorder(lambda argv, timeout: CommandResult(argv, 0, squeue_output, ""))
