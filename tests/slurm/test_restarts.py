"""No job and no result of a Slurm queue is lost when the server or slurmctld dies meanwhile.

Each test runs `epic serve` on a fresh EPIC_HOME with a queue on the cluster's partition, kills
the server by its PID with SIGKILL (or restarts slurmctld) at a chosen moment of its jobs'
lives, restarts it on the same state and ports, and checks over HTTP and in Slurm that every
job ended as its steps did, that every step ran exactly once (by the ledger its scripts append
to, and by the Slurm jobs carrying its tag), and that the results are in the data store.
"""

from __future__ import annotations

import shutil
import textwrap
import time
from pathlib import Path

import pytest

from tests.faults import (
    Installation,
    md5_hex,
    newest_slurm_job_id,
    patterned,
    script_jobs,
    served_installation,  # noqa: F401 (the installation fixture)
    slurm_holds_a_step,
    slurm_runs_per_step,
    slurmctld_stopped,
    step_statuses,
    wait_for_slurm_state,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUEUE = "slurm-faults"
OPENFOAM = "openfoam-faults"
CAVITY_FILES = ("0/U", "0/p", "constant/transportProperties", "system/blockMeshDict")
CAVITY = Path("/usr/share/doc/openfoam-examples/examples/incompressible/icoFoam/cavity/cavity")
MEGABYTE = 2**20
# Jobs submitted in one array, so that the worker hands their steps to Slurm in one batch.
BATCH = 12
# Generous: other tests may be using the cluster's cores at the same time.
FINISH_SECONDS = 120


@pytest.fixture
def cluster(installation, node_shape) -> Installation:
    """The installation with a queue on the cluster's first partition, running Script jobs."""
    installation.admin("catalog", "load", str(_catalog_file(installation, *node_shape)))
    return installation


def _catalog_file(installation: Installation, partition: str, cores: int):
    """A catalog of the Slurm queue, and an OpenFOAM whose steps note when they start and stop.

    The start script waits for the test's release, so that a test holds every step at its
    start; Slurm names each step's job after the step's id, which ends the job's name.
    """
    step = "${SLURM_JOB_NAME##*-}"
    start_script = installation.note(f"started {step}") + installation.wait_for_release()
    path = installation.home / "catalog.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            clusters:
              - {{name: slurm-faults, backend: slurm}}
            queues:
              - queue_code: {QUEUE}
                cluster: slurm-faults
                partition: {partition}
                max_allocation: {cores}
                cpus: 1
                cores_per_cpu: {cores}
                node_count: 1
            applications:
              - product_name: Script
                versions:
                  - {{app_code: script, version: "1", driver: script, queues: [local, {QUEUE}]}}
              - product_name: OpenFOAM
                versions:
                  - app_code: {OPENFOAM}
                    version: "1912"
                    driver: openfoam
                    queues: [{QUEUE}]
                    environment: {{WM_PROJECT_DIR: /usr/share/openfoam}}
            """
        )
    )
    with path.open("a") as catalog:
        catalog.write(f"        start_script: {_block(start_script)}")
        catalog.write(f"        stop_script: {_block(installation.note(f'stopped {step}'))}")
    return path


def _block(script: str) -> str:
    """A YAML literal block holding a script, indented for an application version's entry."""
    return "|\n" + textwrap.indent(script, " " * 10)


def _slurm_id(installation: Installation, job_id: int) -> int:
    """The Slurm job id of a job's first step, once the server has recorded its submission."""
    job = installation.wait_for_job(
        job_id, lambda job: job["job_steps"][0]["local_job_id"] is not None, "went to Slurm"
    )
    return job["job_steps"][0]["local_job_id"]


def _holding_script(installation: Installation, name: str) -> str:
    """A step that notes its start, waits for the release, writes its result and notes that."""
    return (
        installation.note(f"started {name}")
        + installation.wait_for_release()
        + f"echo {name} > result.txt\n"
        + installation.note(f"ended {name}")
    )


def _assert_ran_once_and_stored(installation: Installation, jobs: dict[int, dict], names):
    """Every job complete, its one step run once by the ledger and in Slurm, its result kept."""
    assert {job["name"]: job["status"] for job in jobs.values()} == dict.fromkeys(
        names, "Job Complete"
    )
    assert sorted(installation.ledger_lines()) == sorted(
        [f"started {name}" for name in names] + [f"ended {name}" for name in names]
    )
    assert set(slurm_runs_per_step(installation, list(jobs)).values()) == {1}
    for name in names:
        assert installation.download(f"{name}/result.txt") == f"{name}\n".encode()


# The server is killed while steps wait in Slurm, run, or finish


@pytest.mark.parametrize("blocker_ends", ["after the restart", "while the server is down"])
def test_steps_pending_in_slurm_when_the_server_is_killed_run_once(
    cluster, node_shape, blocker_ends
):
    _, cores = node_shape
    blocker = cluster.submit_script("blocker", _holding_script(cluster, "blocker"), QUEUE, cores)
    cluster.wait_for_ledger("started blocker")
    names = ["first", "second"]
    job_ids = [
        cluster.submit_script(name, _holding_script(cluster, name), QUEUE) for name in names
    ]
    for job_id in job_ids:
        wait_for_slurm_state(_slurm_id(cluster, job_id), {"PENDING"})

    cluster.kill()
    if blocker_ends == "while the server is down":
        cluster.release()
        cluster.wait_for_ledger("ended blocker")
    cluster.start()
    cluster.release()
    jobs = cluster.wait_until_finished([blocker, *job_ids], timeout=FINISH_SECONDS)

    _assert_ran_once_and_stored(cluster, jobs, ["blocker", *names])


def test_steps_handed_to_slurm_in_a_batch_when_the_server_is_killed_run_once(cluster):
    names = [f"batch{index}" for index in range(BATCH)]
    cluster.upload({f"{name}/run.sh": _holding_script(cluster, name).encode() for name in names})
    newest = newest_slurm_job_id()
    submitted = cluster.submit_array(script_jobs(names, QUEUE))

    _wait_for_first_submission(cluster, submitted, newest)
    cluster.kill()
    cluster.start()
    cluster.release()
    jobs = cluster.wait_until_finished([job["id"] for job in submitted], timeout=FINISH_SECONDS)

    _assert_ran_once_and_stored(cluster, jobs, names)


def _wait_for_first_submission(installation: Installation, jobs: list[dict], newest: int):
    """Wait until Slurm holds a step of these jobs, or the server has recorded one.

    The worker hands a batch of steps to sbatch before it records any: a kill at the first
    sight of one in Slurm lands while others are submitted but not yet recorded.
    """
    steps = [step["id"] for job in jobs for step in job["job_steps"]]
    deadline = time.monotonic() + FINISH_SECONDS
    while not slurm_holds_a_step(steps, newest):
        first = installation.job(jobs[0]["id"])
        if first["job_steps"][0]["local_job_id"] is not None:
            return
        assert time.monotonic() < deadline, first


@pytest.mark.parametrize("steps_end", ["after the restart", "while the server is down"])
def test_steps_running_in_slurm_when_the_server_is_killed_run_once(cluster, steps_end):
    names = ["first", "second"]
    job_ids = [
        cluster.submit_script(name, _holding_script(cluster, name), QUEUE) for name in names
    ]
    cluster.wait_for_ledger(*[f"started {name}" for name in names], timeout=FINISH_SECONDS)

    cluster.kill()
    if steps_end == "while the server is down":
        cluster.release()
        cluster.wait_for_ledger(*[f"ended {name}" for name in names])
    cluster.start()
    cluster.release()
    jobs = cluster.wait_until_finished(job_ids, timeout=FINISH_SECONDS)

    _assert_ran_once_and_stored(cluster, jobs, names)


@pytest.mark.parametrize("moment", ["the steps have just ended", "a job stages out"])
def test_jobs_finishing_when_the_server_is_killed_keep_their_results(cluster, moment):
    names = ["first", "second"]
    job_ids = [
        cluster.submit_script(name, _large_output_script(cluster, name), QUEUE) for name in names
    ]
    cluster.wait_for_ledger(*[f"started {name}" for name in names], timeout=FINISH_SECONDS)

    cluster.release()
    if moment == "the steps have just ended":
        cluster.wait_for_ledger(*[f"ended {name}" for name in names])
    else:
        cluster.wait_for_job(job_ids[0], lambda job: job["status"] == "Staging Out", "staged out")
    cluster.kill()
    assert all(f"Job {job_id}: staged out" not in cluster.log() for job_id in job_ids)
    cluster.start()
    jobs = cluster.wait_until_finished(job_ids, timeout=FINISH_SECONDS)

    _assert_ran_once_and_stored(cluster, jobs, names)
    for name in names:
        stored = cluster.stored(f"{name}/")
        for index in "012":
            expected = patterned(f"{name} {index}", 50 * MEGABYTE)
            assert stored[f"out-{index}.txt"]["Size"] == len(expected)
            assert stored[f"out-{index}.txt"]["ETag"] == f'"{md5_hex(expected)}"'


def _large_output_script(installation: Installation, name: str) -> str:
    """A step that writes 150 MB of results once released."""
    writes = "".join(
        f"yes '{name} {index}' | head -c {50 * MEGABYTE} > out-{index}.txt\n" for index in "012"
    )
    return (
        installation.note(f"started {name}")
        + installation.wait_for_release()
        + writes
        + f"echo {name} > result.txt\n"
        + installation.note(f"ended {name}")
    )


# A job of three steps across a kill


@pytest.mark.openfoam
@pytest.mark.parametrize("kill_when", ["the first step runs", "the first step is recorded"])
def test_steps_after_a_kill_between_steps_run_once_in_order(cluster, kill_when):
    if shutil.which("icoFoam") is None:
        pytest.skip("Debian's OpenFOAM is not installed")
    job_id = _submit_cavity(cluster)
    first, steps = _slurm_id(cluster, job_id), _step_ids(cluster, job_id)
    cluster.wait_for_ledger(f"started {steps[0]}", timeout=FINISH_SECONDS)

    if kill_when == "the first step runs":
        cluster.kill()
        cluster.release()
        cluster.wait_for_ledger(f"stopped {steps[0]}")
    else:
        cluster.release()
        cluster.wait_for_job(
            job_id, lambda job: step_statuses(job)[0] == "Step Complete", "ended its first step"
        )
        cluster.kill()
    cluster.start()
    job = cluster.wait_until_finished([job_id], timeout=FINISH_SECONDS)[job_id]

    assert job["status"] == "Job Complete", job
    assert [step["exit_code"] for step in job["job_steps"]] == [0, 0, 0]
    assert job["job_steps"][0]["local_job_id"] == first
    assert cluster.ledger_lines() == [
        line for step in steps for line in (f"started {step}", f"stopped {step}")
    ]
    assert set(slurm_runs_per_step(cluster, [job_id]).values()) == {1}
    stored = cluster.stored("cavity/")
    assert {"constant/polyMesh/points", "processor0/0.5/U", "processor1/0.5/U"} <= set(stored)


def _submit_cavity(installation: Installation) -> int:
    """Upload OpenFOAM's cavity and submit it as blockMesh, decomposePar and a 2-way solver."""
    if not all((CAVITY / name).exists() for name in CAVITY_FILES):
        pytest.skip("Debian's openfoam-examples is not installed")
    files = [path for path in CAVITY.rglob("*") if path.is_file()]
    installation.upload(
        {f"cavity/{path.relative_to(CAVITY)}": path.read_bytes() for path in files}
    )
    tasks = [
        {"reference": "blockMesh", "partitions": 1, "runtime": 1},
        {"reference": "decomposePar", "partitions": 1, "runtime": 1},
        {"reference": "solver", "partitions": 2, "runtime": 1},
    ]
    options = {
        "blockMesh": True,
        "partitions": 2,
        "solver": "icoFoam",
        "reconstructPar": False,
        "upload_excludes": "yes",
    }
    return installation.submit(
        {
            "name": "cavity",
            "config": {"upload": ["complete", "failure", "cancel"], "overwrite_existing": True},
            "jobs": [
                {
                    "name": "cavity",
                    "spec": {"app_code": OPENFOAM, "tasks": tasks},
                    "app_options": options,
                    "cluster": {"queue_code": QUEUE},
                    "input_data": {"path": "epic://cavity/"},
                }
            ],
        }
    )


def _step_ids(installation: Installation, job_id: int) -> list[int]:
    """The ids of a job's steps, in order."""
    return [step["id"] for step in installation.job(job_id)["job_steps"]]


# slurmctld is restarted while steps run and wait


def test_jobs_running_and_pending_across_a_slurmctld_restart_run_once(cluster, node_shape):
    _, cores = node_shape
    running = cluster.submit_script("running", _holding_script(cluster, "running"), QUEUE)
    cluster.wait_for_ledger("started running", timeout=FINISH_SECONDS)
    pending = cluster.submit_script("pending", _holding_script(cluster, "pending"), QUEUE, cores)
    wait_for_slurm_state(_slurm_id(cluster, pending), {"PENDING"})

    with slurmctld_stopped():
        late = cluster.submit_script("late", _holding_script(cluster, "late"), QUEUE)
        seen = _watch_until(cluster, [running, pending, late], _told_slurm_is_silent(running))
        # The running step ends while Slurm is still away.
        cluster.release()
        cluster.wait_for_ledger("ended running")
    jobs = cluster.wait_until_finished([running, pending, late], timeout=FINISH_SECONDS)

    statuses = {status for job in seen for status in [job["status"], *step_statuses(job)]}
    assert not statuses & {"Job Failed", "Job Cancelled", "Step Failed", "Step Cancelled"}
    _assert_ran_once_and_stored(cluster, jobs, ["running", "pending", "late"])


def _told_slurm_is_silent(job_id: int):
    """A condition on snapshots: the job's step shows that Slurm did not answer."""
    return lambda job: (
        job["id"] == job_id
        and job["job_steps"][0]["scheduler_reason"].startswith("Slurm did not answer")
    )


def _watch_until(installation: Installation, job_ids: list[int], condition) -> list[dict]:
    """Read these jobs again and again until one reading meets `condition`; return them all."""
    seen: list[dict] = []
    deadline = time.monotonic() + FINISH_SECONDS
    while not any(condition(job) for job in seen):
        assert time.monotonic() < deadline, seen[-len(job_ids) :]
        seen += [installation.job(job_id) for job_id in job_ids]
        time.sleep(0.2)
    return seen
