"""The spine of the product: pyepic runs a real OpenFOAM case end to end."""

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.openfoam]


@pytest.mark.parametrize("partitions", [1, 2])
def test_cavity_runs_end_to_end_through_pyepic(run_flow, cavity, partitions):
    seen = run_flow("run", cavity, partitions)

    assert seen["listing"] == ["0", "constant", "system"]
    assert seen["quote_queues"][0] == "local"
    job = seen["job"]
    assert job["status"] == "Job Complete"
    assert job["finished"] is True
    expected_steps = ["blockMesh", "solver"]
    if partitions > 1:
        expected_steps = ["blockMesh", "decomposePar", "solver", "reconstructPar"]
    assert [step["name"] for step in job["steps"]] == expected_steps
    assert {step["status"] for step in job["steps"]} == {"Step Complete"}
    assert {step["exit_code"] for step in job["steps"]} == {0}
    solver = next(step for step in job["steps"] if step["name"] == "solver")
    assert "End" in solver["stdout_tail"]

    assert set(seen["residual_names"]) >= {"Ux", "Uy", "p"}
    assert seen["residual_lengths"] == {"time": 100, "Ux": 100, "Uy": 100, "p": 100}
    assert "0.5/U" in seen["downloaded"]
    assert "0.5/p" in seen["downloaded"]
    assert not [path for path in seen["downloaded"] if path.startswith("processor")]


def test_broken_case_fails_and_solver_never_runs(run_flow, cavity):
    seen = run_flow("fail", cavity)

    job = seen["job"]
    assert job["status"] == "Job Failed"
    assert job["finished"] is True
    steps = {step["name"]: step for step in job["steps"]}
    assert steps["blockMesh"]["status"] == "Step Failed"
    assert steps["blockMesh"]["exit_code"] != 0
    assert "blockMeshDict" in steps["blockMesh"]["stderr_tail"]
    assert steps["solver"]["status"] == "Step Skipped"
    assert steps["solver"]["exit_code"] is None


def test_cancelled_job_stops_its_solver_and_uploads_results(run_flow, cavity):
    seen = run_flow("cancel", cavity)

    job = seen["job"]
    assert job["status"] == "Job Cancelled"
    assert job["finished"] is True
    steps = {step["name"]: step for step in job["steps"]}
    assert steps["blockMesh"]["status"] == "Step Complete"
    assert steps["solver"]["status"] == "Step Cancelled"
    assert steps["solver"]["exit_code"] == 143
    written_times = [name for name in seen["listing"] if name not in ("0", "constant", "system")]
    assert written_times
