"""How solver residuals are read from an OpenFOAM solver log."""

import io
import tracemalloc

from epic.software.base import ResidualSeries
from epic.software.openfoam import OpenFoamDriver, parse_residuals_stream

SAMPLE_LOG = """\
Exec   : icoFoam
Time   : 16:01:57
Create mesh for time = 0

GAMG:  Solving for p, Initial residual = 9, Final residual = 9, No Iterations 1

Starting time loop

Time = 0.005

Courant Number mean: 0 max: 0
smoothSolver:  Solving for Ux, Initial residual = 1, Final residual = 8.90511e-06, No Iterations 19
smoothSolver:  Solving for Uy, Initial residual = 0, Final residual = 0, No Iterations 0
DICPCG:  Solving for p, Initial residual = 1, Final residual = 0.0492854, No Iterations 12
time step continuity errors : sum local = 0.000466513, global = -1.79995e-19, cumulative = -1.8e-19
DICPCG:  Solving for p, Initial residual = 0.590864, Final residual = 2.65225e-07, No Iterations 35
ExecutionTime = 0 s  ClockTime = 0 s

Time = 0.01

smoothSolver:  Solving for Ux, Initial residual = 0.160686, Final residual = 7e-06, No Iterations 9
DICPCG:  Solving for p, Initial residual = 0.428925, Final residual = 0.0103739, No Iterations 22
DILUPBiCGStab:  Solving for k, Initial residual = 0.5, Final residual = 1e-06, No Iterations 3
ExecutionTime = 0.01 s  ClockTime = 0 s

Time = 0.015

ExecutionTime = 0.01 s  ClockTime = 0 s

Time = 0.02

smoothSolver:  Solving for Ux, Initial residual = 0.0918, Final residual = 5e-06, No Iterations 18
smoothSolver:  Solving for Uy, Initial residual = 0.102, Final residual = 7e-06, No Iterations 18
DICPCG:  Solving for p, Initial residual = 0.25, Final residual = 0.01, No Iterations 20
DICPCG:  Solving for p, Initial residual = 0.125, Final residual = 4e-07, No Iterations 31
ExecutionTime = 0.02 s  ClockTime = 0 s

End
"""

SAMPLE_SERIES = ResidualSeries(
    times=["0.005", "0.01", "0.015", "0.02"],
    fields={
        "Ux": ["1", "0.160686", "", "0.0918"],
        "Uy": ["0", "", "", "0.102"],
        "p": ["1", "0.428925", "", "0.25"],
        "k": ["", "0.5", "", ""],
    },
)


def test_parse_keeps_first_residual_of_each_field_when_log_has_time_steps():
    assert parse_residuals_stream(io.StringIO(SAMPLE_LOG)) == SAMPLE_SERIES


def test_parse_reads_lines_one_by_one_when_given_a_generator():
    lines = (line for line in SAMPLE_LOG.splitlines(keepends=True))

    assert parse_residuals_stream(lines) == SAMPLE_SERIES


def test_parse_returns_empty_series_when_log_has_no_time_step():
    lines = ["Starting time loop\n", "DICPCG:  Solving for p, Initial residual = 1, Final\n"]

    assert parse_residuals_stream(lines) == ResidualSeries(times=[], fields={})


def test_parse_keeps_memory_small_when_log_is_100_megabytes():
    noise = "Courant Number mean: 0.0976825 max: 0.585607 ".ljust(499, "x") + "\n"
    lines = (noise for _ in range(200_000))

    tracemalloc.start()
    series = parse_residuals_stream(lines)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert series == ResidualSeries(times=[], fields={})
    assert len(noise) * 200_000 == 100_000_000
    assert peak < 1_000_000


def test_residuals_reads_solver_stdout_when_step_is_solver():
    driver = OpenFoamDriver(solvers=["icoFoam"])

    assert driver.residuals("solver", SAMPLE_LOG) == SAMPLE_SERIES


def test_residuals_returns_none_when_step_is_not_solver():
    driver = OpenFoamDriver(solvers=["icoFoam"])

    assert driver.residuals("reconstructPar", SAMPLE_LOG) is None


def test_residuals_returns_none_when_solver_stopped_before_a_time_step():
    driver = OpenFoamDriver(solvers=["icoFoam"])

    assert driver.residuals("solver", "--> FOAM FATAL ERROR:\ncannot find file\n") is None


def test_residuals_reads_last_line_when_stdout_has_no_final_newline():
    driver = OpenFoamDriver(solvers=["icoFoam"])
    stdout = "Time = 1\r\nGAMG:  Solving for p, Initial residual = 0.5, Final residual = 0.1"

    assert driver.residuals("solver", stdout) == ResidualSeries(["1"], {"p": ["0.5"]})
