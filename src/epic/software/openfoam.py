"""The OpenFOAM driver: pyepic OpenFoamJob options become mesh, decompose, solve, reconstruct."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

from rest_framework.exceptions import ErrorDetail, ValidationError

from epic.software.base import Command, ResidualSeries, StepPlan, TaskSpec

logger = logging.getLogger(__name__)

BLOCK_MESH = "blockMesh"
DECOMPOSE = "decomposePar"
SOLVER = "solver"
RECONSTRUCT = "reconstructPar"
STEP_NAMES = (BLOCK_MESH, DECOMPOSE, SOLVER, RECONSTRUCT)

# Decomposing or solving needs the step before to have worked; reconstructing is still worth
# doing after a failed solver, so that the time steps it wrote come back reconstructed.
RUN_IF_PREVIOUS_STEP_FAILS = {BLOCK_MESH: True, DECOMPOSE: False, SOLVER: False, RECONSTRUCT: True}
# Bounds that keep values meaningful to OpenFOAM (and out of float overflow territory).
MAX_TIME = 1e12
MAX_COUNT = 1_000_000

SOLVER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
PARTITION_FOLDERS = "processor*"

_TIME_LINE = re.compile(r"Time = (\S+)")
_SOLVING_LINE = re.compile(r"\s*\S+:\s+Solving for ([^,\s]+), Initial residual = ([^,]+),")


def installed_solvers(bin_dir: Path = Path("/usr/bin")) -> list[str]:
    """Return the names of the `*Foam` executables in bin_dir, sorted."""
    found = (path for path in bin_dir.glob("*Foam") if path.is_file() and os.access(path, os.X_OK))
    return sorted(path.name for path in found if SOLVER_NAME.fullmatch(path.name))


def format_number(value: int | float) -> str:
    """Return a number as OpenFOAM reads it: 1000 for 1000.0, 0.5 for 0.5, 1e-05 for 0.00001."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))

    return repr(value) if isinstance(value, float) else str(value)


def _error(message: str, code: str) -> list[ErrorDetail]:
    return [ErrorDetail(message, code=code)]


def _check_bool(value: object) -> list[ErrorDetail] | None:
    if isinstance(value, bool):
        return None
    return _error("Must be true or false.", "invalid_type")


def _check_positive_int(value: object) -> list[ErrorDetail] | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_COUNT:
        return None
    return _error(f"Must be an integer from 1 to {MAX_COUNT}.", "invalid")


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _check_number(value: object) -> list[ErrorDetail] | None:
    if _is_number(value) and 0 <= value <= MAX_TIME:
        return None
    return _error(f"Must be a number from 0 to {MAX_TIME:g}.", "invalid")


def _check_choice(value: object, choices: tuple[str, ...]) -> list[ErrorDetail] | None:
    if isinstance(value, str) and value in choices:
        return None
    return _error(f"Must be one of: {', '.join(choices)}.", "invalid_choice")


def _choice(*choices: str) -> Callable[[object], list[ErrorDetail] | None]:
    return partial(_check_choice, choices=choices)


# Every option pyepic 1.0.24's OpenFoamJob sends, with its default and its check.
# The solver and reconstruct_time depend on other state, so the driver checks them itself.
OPTIONS: dict[str, tuple[object, Callable[[object], list[ErrorDetail] | None] | None]] = {
    "blockMesh": (False, _check_bool),
    "decomposePar": (True, _check_bool),
    "reconstructPar": (True, _check_bool),
    "blockMesh_runtime": (1, _check_positive_int),
    "decomposePar_runtime": (1, _check_positive_int),
    "solver_runtime": (1, _check_positive_int),
    "reconstructPar_runtime": (1, _check_positive_int),
    "clear_partitions": (True, _check_bool),
    "partitions": (1, _check_positive_int),
    "stopAt": ("endTime", _choice("endTime", "writeNow", "noWriteNow", "nextWrite")),
    "endTime": (0, _check_number),
    "startTime": (0, _check_number),
    "startFrom": ("latestTime", _choice("firstTime", "startTime", "latestTime")),
    "solver": ("simpleFoam", None),
    "reconstruct_option": ("all", _choice("all", "latest", "time")),
    "reconstruct_time": ("", None),
    "upload_excludes": ("no", _choice("yes", "no", "error")),
    "solver_tasks_per_node": ("core", _choice("core", "socket", "node", "device")),
    "solver_tasks_per_device": (1, _check_positive_int),
}


class OpenFoamDriver:
    """Validates OpenFoamJob options, plans the OpenFOAM steps and reads solver residuals."""

    def __init__(self, solvers: Iterable[str] | None = None) -> None:
        names = installed_solvers() if solvers is None else list(solvers)
        invalid = [name for name in names if not SOLVER_NAME.fullmatch(name)]
        if invalid:
            raise ValueError(f"Invalid solver names: {', '.join(invalid)}")

        self.solvers = frozenset(names)
        logger.debug("OpenFOAM driver allows %d solvers", len(self.solvers))

    def validate(self, app_options: dict, tasks: list[TaskSpec]) -> dict:
        """Return the options with pyepic's defaults filled in, or raise ValidationError."""
        if not isinstance(app_options, dict):
            raise ValidationError({"app_options": _error("Must be an object.", "invalid_type")})

        options = {name: app_options.get(name, default) for name, (default, _) in OPTIONS.items()}
        unknown = (name for name in app_options if name not in OPTIONS)
        errors = {name: _error("Unknown option.", "unknown_option") for name in unknown}

        for name, (_, check) in OPTIONS.items():
            problem = check(options[name]) if check else None
            if problem:
                errors[name] = problem

        errors.update(self._check_solver(options["solver"]))
        errors.update(_check_reconstruct_time(options))
        if not errors:
            errors.update(_check_tasks(options, tasks))

        if errors:
            raise ValidationError(errors)
        return options

    def plan_steps(self, app_options: dict, tasks: list[TaskSpec]) -> list[StepPlan]:
        """Return the steps to run, in order, for options that `validate` returned."""
        runtimes = {task.reference: task.runtime for task in tasks}
        parallel = app_options["partitions"] > 1
        wanted = {
            BLOCK_MESH: app_options["blockMesh"],
            DECOMPOSE: parallel and app_options["decomposePar"],
            SOLVER: True,
            RECONSTRUCT: parallel and app_options["reconstructPar"],
        }

        builders = {
            BLOCK_MESH: _plan_block_mesh,
            DECOMPOSE: _plan_decompose,
            SOLVER: _plan_solver,
            RECONSTRUCT: _plan_reconstruct,
        }
        plans = []
        for name in STEP_NAMES:
            if wanted[name]:
                runtime = runtimes.get(name, app_options[f"{name}_runtime"])
                plans.append(builders[name](app_options, runtime))

        logger.debug("Planned OpenFOAM steps: %s", ", ".join(plan.name for plan in plans))
        return plans

    def upload_excludes(self, app_options: dict, job_failed: bool) -> list[str]:
        """Return the partition folders unless the options ask to upload them."""
        choice = app_options["upload_excludes"]
        if choice == "yes" or (choice == "error" and job_failed):
            return []
        return [PARTITION_FOLDERS]

    def residuals(self, step_name: str, stdout: str | Iterable[str]) -> ResidualSeries | None:
        """Return the solver step's residuals, or None for other steps or a log without any."""
        if step_name != SOLVER:
            return None

        lines = _split_lines(stdout) if isinstance(stdout, str) else stdout
        series = parse_residuals_stream(lines)
        return series if series.times else None

    def _check_solver(self, solver: object) -> dict[str, list[ErrorDetail]]:
        if not isinstance(solver, str) or not SOLVER_NAME.fullmatch(solver):
            message = "Must be 1 to 64 letters and digits, starting with a letter."
            return {"solver": _error(message, "invalid")}

        if solver not in self.solvers:
            return {"solver": _error(f"{solver} is not an allowed solver.", "not_allowed")}
        return {}


def _check_reconstruct_time(options: dict) -> dict[str, list[ErrorDetail]]:
    value = options["reconstruct_time"]
    if options["reconstruct_option"] == "time":
        if _is_number(value) and value >= 0:
            return {}
        message = "Must be a finite number of at least 0 when reconstruct_option is time."
        return {"reconstruct_time": _error(message, "invalid")}

    # Ignored unless reconstruct_option is time, so pyepic's "" and any valid time pass.
    if value == "" or (_is_number(value) and value >= 0):
        return {}
    return {"reconstruct_time": _error("Must be a number or an empty string.", "invalid")}


def _check_tasks(options: dict, tasks: list[TaskSpec]) -> dict[str, list[ErrorDetail]]:
    references = [task.reference for task in tasks]
    unknown = sorted(set(references) - set(STEP_NAMES))
    if unknown:
        message = f"Unknown step {', '.join(unknown)}; steps are {', '.join(STEP_NAMES)}."
        return {"tasks": _error(message, "unknown_step")}

    repeated = sorted({name for name in references if references.count(name) > 1})
    if repeated:
        return {"tasks": _error(f"More than one task for {', '.join(repeated)}.", "invalid")}

    solver_tasks = [task for task in tasks if task.reference == SOLVER]
    if solver_tasks and solver_tasks[0].partitions != options["partitions"]:
        message = (
            f"The solver task has {solver_tasks[0].partitions} partitions "
            f"but the partitions option is {options['partitions']}."
        )
        return {"tasks": _error(message, "partitions_mismatch")}
    return {}


def _plan_block_mesh(options: dict, runtime: int) -> StepPlan:
    return StepPlan(
        name=BLOCK_MESH,
        commands=(Command(("blockMesh",)),),
        max_runtime_hours=runtime,
        run_if_previous_step_fails=RUN_IF_PREVIOUS_STEP_FAILS[BLOCK_MESH],
    )


_DECOMPOSE_PAR_DICT = """\
FoamFile
{{
    version     2.0;
    format      ascii;
    class       dictionary;
    object      decomposeParDict;
}}

numberOfSubdomains {partitions};

method          simple;

simpleCoeffs
{{
    n               ({partitions} 1 1);
    delta           0.001;
}}
"""


def decompose_par_dict(partitions: int) -> str:
    """Return a decomposeParDict that cuts the mesh into slabs along x."""
    # Debian's scotch is a dummy that fails, so the geometric simple method is used.
    return _DECOMPOSE_PAR_DICT.format(partitions=partitions)


def _plan_decompose(options: dict, runtime: int) -> StepPlan:
    # decomposePar refuses a case that already has processor folders unless forced, and -force
    # removes them all; with decomposePar off, clear_partitions leaves the case's folders alone.
    argv = ("decomposePar", "-force") if options["clear_partitions"] else ("decomposePar",)

    # Limitation: the case's own decomposeParDict is replaced, so its method and weights are lost.
    files = {"system/decomposeParDict": decompose_par_dict(options["partitions"])}
    return StepPlan(
        name=DECOMPOSE,
        commands=(Command(argv),),
        max_runtime_hours=runtime,
        run_if_previous_step_fails=RUN_IF_PREVIOUS_STEP_FAILS[DECOMPOSE],
        files=files,
    )


def _set_control(entry: str, value: str) -> Command:
    return Command(("foamDictionary", "system/controlDict", "-entry", entry, "-set", value))


def control_commands(options: dict) -> list[Command]:
    """Return the foamDictionary commands that apply the solver options to system/controlDict."""
    # pyepic sends 0 for endTime and startTime when the user left them alone.
    commands = [_set_control("stopAt", options["stopAt"])]
    if options["endTime"] > 0:
        commands.append(_set_control("endTime", format_number(options["endTime"])))

    commands.append(_set_control("startFrom", options["startFrom"]))
    if options["startFrom"] == "startTime" and options["startTime"] > 0:
        commands.append(_set_control("startTime", format_number(options["startTime"])))
    return commands


def _plan_solver(options: dict, runtime: int) -> StepPlan:
    partitions = options["partitions"]
    if partitions > 1:
        solve = Command((options["solver"], "-parallel"), parallel=True)
    else:
        solve = Command((options["solver"],))

    # The task distribution options are the backend's business: it reads them from the tasks.
    return StepPlan(
        name=SOLVER,
        commands=(*control_commands(options), solve),
        num_tasks=partitions,
        max_runtime_hours=runtime,
        run_if_previous_step_fails=RUN_IF_PREVIOUS_STEP_FAILS[SOLVER],
    )


def _plan_reconstruct(options: dict, runtime: int) -> StepPlan:
    argv: tuple[str, ...] = ("reconstructPar",)
    if options["reconstruct_option"] == "latest":
        argv += ("-latestTime",)
    elif options["reconstruct_option"] == "time":
        argv += ("-time", format_number(options["reconstruct_time"]))

    return StepPlan(
        name=RECONSTRUCT,
        commands=(Command(argv),),
        max_runtime_hours=runtime,
        run_if_previous_step_fails=RUN_IF_PREVIOUS_STEP_FAILS[RECONSTRUCT],
    )


def _split_lines(text: str) -> Iterator[str]:
    # Unlike splitlines or StringIO, this holds one line at a time next to the caller's text.
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


class _ResidualTable:
    """Collects one value per field per time step, with "" where a field was not solved."""

    def __init__(self) -> None:
        self.times: list[str] = []
        self.fields: dict[str, list[str]] = {}
        self.current: dict[str, str] = {}

    def start_step(self, time: str) -> None:
        self.finish_step()
        self.times.append(time)

    def record(self, field_name: str, value: str) -> None:
        # Only the first solve of a field in a time step counts.
        if self.times and field_name not in self.current:
            self.current[field_name] = value

    def finish_step(self) -> None:
        if not self.times:
            return

        done = len(self.times) - 1
        for name in self.current:
            self.fields.setdefault(name, [""] * done)
        for name, values in self.fields.items():
            if len(values) == done:
                values.append(self.current.get(name, ""))
        self.current = {}


def parse_residuals_stream(lines: Iterable[str]) -> ResidualSeries:
    """Return the first initial residual of each field in each time step of a solver log.

    Every field's list is aligned with `times`: "" marks a time step in which the field was not
    solved. Lines are read one at a time, so an open log file of any size can be passed.
    """
    # Limitation: a multi-region solver solves a field once per region in a time step, and
    # only the first region's residual is kept.
    table = _ResidualTable()
    for line in lines:
        text = line.rstrip()
        time = _TIME_LINE.fullmatch(text)
        if time:
            table.start_step(time.group(1))
            continue

        solving = _SOLVING_LINE.match(text)
        if solving:
            table.record(solving.group(1), solving.group(2))

    table.finish_step()
    return ResidualSeries(times=table.times, fields=table.fields)
