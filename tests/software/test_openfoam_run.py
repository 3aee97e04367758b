"""The OpenFOAM driver's plans, run for real on the lid-driven cavity tutorial."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from epic.software.base import Command, StepPlan, TaskSpec
from epic.software.openfoam import OpenFoamDriver

CAVITY = Path("/usr/share/doc/openfoam-examples/examples/incompressible/icoFoam/cavity/cavity")

# Shared memory between ranks, and the runtime's own channel pinned to the loopback interface.
LOOPBACK_MPI_OPTIONS = (
    "--mca", "btl", "self,vader",
    "--mca", "pml", "ob1",
    "--mca", "oob_tcp_if_include", "lo",
    "--mca", "btl_tcp_if_include", "lo",
)  # fmt: skip

pytestmark = [
    pytest.mark.openfoam,
    pytest.mark.skipif(not Path("/usr/bin/icoFoam").exists(), reason="OpenFOAM is not installed"),
    pytest.mark.skipif(not CAVITY.is_dir(), reason="the OpenFOAM tutorials are not installed"),
]


def private_network_prefix() -> tuple[str, ...]:
    """Return a prefix that runs a command in its own network namespace, or () if impossible."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip") or "/usr/sbin/ip"
    if os.geteuid() != 0 or not unshare or not Path(ip).exists():
        return ()

    prefix = (unshare, "-n", "sh", "-c", f'{ip} link set lo up && exec "$@"', "sh")
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    return prefix if probe.returncode == 0 else ()


@pytest.fixture(scope="module")
def run_environment():
    environment = dict(os.environ, WM_PROJECT_DIR="/usr/share/openfoam")
    if os.geteuid() == 0:
        environment.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

    return {"environment": environment, "prefix": private_network_prefix()}


def launch_argv(command: Command, num_tasks: int, prefix: tuple[str, ...]) -> list[str]:
    if not command.parallel:
        return list(command.argv)

    mpirun = ("mpirun", "-np", str(num_tasks), "--oversubscribe", *LOOPBACK_MPI_OPTIONS)
    return [*prefix, *mpirun, *command.argv]


def run_step(plan: StepPlan, case: Path, run_environment: dict) -> str:
    """Do what the compute backend does with one step, and return the step's stdout."""
    for relative in plan.remove:
        for path in case.glob(relative):
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    for relative, text in plan.files.items():
        (case / relative).write_text(text)

    stdout = []
    for command in plan.commands:
        argv = launch_argv(command, plan.num_tasks, run_environment["prefix"])
        result = subprocess.run(
            argv,
            cwd=case,
            env={**run_environment["environment"], **plan.environment},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        stdout.append(result.stdout)
        assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return "".join(stdout)


def run_job(case: Path, options: dict, run_environment: dict) -> dict[str, str]:
    """Validate and plan a cavity job as pyepic sends it, run every step, return their stdout."""
    driver = OpenFoamDriver(solvers=["icoFoam"])
    options = {"solver": "icoFoam", "blockMesh": True, **options}
    tasks = [TaskSpec(reference="blockMesh"), TaskSpec(reference="decomposePar")]
    tasks += [TaskSpec(reference="solver", partitions=options.get("partitions", 1))]

    validated = driver.validate(options, tasks)
    plans = driver.plan_steps(validated, tasks)
    return {plan.name: run_step(plan, case, run_environment) for plan in plans}


def time_folders(case: Path) -> list[str]:
    names = [path.name for path in case.iterdir() if path.is_dir()]
    return sorted((name for name in names if name.replace(".", "", 1).isdigit()), key=float)


@pytest.fixture
def cavity(tmp_path):
    return Path(shutil.copytree(CAVITY, tmp_path / "cavity"))


def test_serial_run_writes_last_time_folder_when_partitions_is_one(cavity, run_environment):
    outputs = run_job(cavity, {"partitions": 1}, run_environment)

    assert list(outputs) == ["blockMesh", "solver"]
    assert time_folders(cavity) == ["0", "0.1", "0.2", "0.3", "0.4", "0.5"]
    assert sorted(path.name for path in (cavity / "0.5").glob("[Up]")) == ["U", "p"]


def test_parallel_run_writes_last_time_folder_when_partitions_is_two(cavity, run_environment):
    outputs = run_job(cavity, {"partitions": 2}, run_environment)

    assert list(outputs) == ["blockMesh", "decomposePar", "solver", "reconstructPar"]
    assert sorted(path.name for path in cavity.glob("processor*")) == ["processor0", "processor1"]
    assert time_folders(cavity) == ["0", "0.1", "0.2", "0.3", "0.4", "0.5"]
    assert sorted(path.name for path in (cavity / "0.5").glob("[Up]")) == ["U", "p"]


def test_reconstruct_writes_only_last_time_when_option_is_latest(cavity, run_environment):
    run_job(cavity, {"partitions": 2, "reconstruct_option": "latest"}, run_environment)

    assert time_folders(cavity) == ["0", "0.5"]


def test_solver_stops_at_end_time_when_end_time_is_set(cavity, run_environment):
    run_job(cavity, {"endTime": 0.2}, run_environment)

    assert time_folders(cavity) == ["0", "0.1", "0.2"]


def test_solver_starts_from_start_time_when_start_from_is_start_time(cavity, run_environment):
    run_job(cavity, {"endTime": 0.2}, run_environment)

    options = {"blockMesh": False, "startFrom": "startTime", "startTime": 0.1, "endTime": 0.3}
    outputs = run_job(cavity, options, run_environment)

    series = OpenFoamDriver(solvers=["icoFoam"]).residuals("solver", outputs["solver"])
    assert (series.times[0], series.times[-1], len(series.times)) == ("0.105", "0.3", 40)


@pytest.mark.parametrize("partitions", [1, 2])
def test_residuals_give_100_values_per_field_when_reading_real_log(
    cavity, run_environment, partitions
):
    outputs = run_job(cavity, {"partitions": partitions}, run_environment)

    series = OpenFoamDriver(solvers=["icoFoam"]).residuals("solver", outputs["solver"])

    assert len(series.times) == 100
    assert (series.times[0], series.times[-1]) == ("0.005", "0.5")
    assert sorted(series.fields) == ["Ux", "Uy", "p"]
    assert [len(values) for values in series.fields.values()] == [100, 100, 100]
    assert [series.fields[name][0] for name in ["Ux", "Uy", "p"]] == ["1", "0", "1"]
    assert all(value for values in series.fields.values() for value in values)
