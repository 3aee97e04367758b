"""How the OpenFOAM driver checks pyepic's OpenFoamJob options and turns them into step plans."""

import math

import pytest
from rest_framework.exceptions import ValidationError

from epic.software.base import Command, StepPlan, TaskSpec
from epic.software.openfoam import (
    OpenFoamDriver,
    decompose_par_dict,
    format_number,
    installed_solvers,
)

# What pyepic 1.0.24's OpenFoamJob sends when the user changes nothing.
PYEPIC_DEFAULTS = {
    "blockMesh": False,
    "decomposePar": True,
    "reconstructPar": True,
    "blockMesh_runtime": 1,
    "decomposePar_runtime": 1,
    "solver_runtime": 1,
    "reconstructPar_runtime": 1,
    "clear_partitions": True,
    "partitions": 1,
    "stopAt": "endTime",
    "endTime": 0,
    "startTime": 0,
    "startFrom": "latestTime",
    "solver": "simpleFoam",
    "reconstruct_option": "all",
    "reconstruct_time": "",
    "upload_excludes": "no",
    "solver_tasks_per_node": "core",
    "solver_tasks_per_device": 1,
}

DEFAULT_CONTROLS = (
    Command(("foamDictionary", "system/controlDict", "-entry", "stopAt", "-set", "endTime")),
    Command(("foamDictionary", "system/controlDict", "-entry", "startFrom", "-set", "latestTime")),
)

BOOLEAN_OPTIONS = ["blockMesh", "decomposePar", "reconstructPar", "clear_partitions"]
COUNT_OPTIONS = [
    "blockMesh_runtime",
    "decomposePar_runtime",
    "solver_runtime",
    "reconstructPar_runtime",
    "partitions",
    "solver_tasks_per_device",
]
TIME_OPTIONS = ["endTime", "startTime"]
CHOICES = {
    "stopAt": ["endTime", "writeNow", "noWriteNow", "nextWrite"],
    "startFrom": ["firstTime", "startTime", "latestTime"],
    "reconstruct_option": ["all", "latest"],
    "upload_excludes": ["yes", "no", "error"],
    "solver_tasks_per_node": ["core", "socket", "node", "device"],
}
CHOICE_ERRORS = {
    "stopAt": "Must be one of: endTime, writeNow, noWriteNow, nextWrite.",
    "startFrom": "Must be one of: firstTime, startTime, latestTime.",
    "reconstruct_option": "Must be one of: all, latest, time.",
    "upload_excludes": "Must be one of: yes, no, error.",
    "solver_tasks_per_node": "Must be one of: core, socket, node, device.",
}


@pytest.fixture
def driver():
    return OpenFoamDriver(solvers=["icoFoam", "simpleFoam"])


def pyepic_tasks(partitions=1, block_mesh=False):
    """Return the tasks pyepic sends for its default steps."""
    names = ["decomposePar", "solver", "reconstructPar"]
    names = ["blockMesh", *names] if block_mesh else names
    return [
        TaskSpec(reference=name, partitions=partitions if name == "solver" else 1)
        for name in names
    ]


def validation_errors(driver, options, tasks=()):
    with pytest.raises(ValidationError) as excinfo:
        driver.validate(options, list(tasks))
    return excinfo.value.detail


def test_validate_fills_pyepic_defaults_when_options_are_empty(driver):
    assert driver.validate({}, []) == PYEPIC_DEFAULTS


def test_validate_returns_options_unchanged_when_pyepic_sends_defaults(driver):
    assert driver.validate(dict(PYEPIC_DEFAULTS), pyepic_tasks()) == PYEPIC_DEFAULTS


@pytest.mark.parametrize("name", BOOLEAN_OPTIONS)
@pytest.mark.parametrize("value", [True, False])
def test_validate_accepts_boolean_when_option_is_a_switch(driver, name, value):
    assert driver.validate({name: value}, [])[name] is value


@pytest.mark.parametrize("name", BOOLEAN_OPTIONS)
@pytest.mark.parametrize("value", [1, 0, "true", None])
def test_validate_rejects_non_boolean_when_option_is_a_switch(driver, name, value):
    assert validation_errors(driver, {name: value}) == {name: ["Must be true or false."]}


@pytest.mark.parametrize("name", COUNT_OPTIONS)
@pytest.mark.parametrize("value", [1, 48])
def test_validate_accepts_positive_integer_when_option_is_a_count(driver, name, value):
    tasks = [TaskSpec(reference="solver", partitions=value)] if name == "partitions" else []

    assert driver.validate({name: value}, tasks)[name] == value


@pytest.mark.parametrize("name", COUNT_OPTIONS)
@pytest.mark.parametrize("value", [0, -1, 1.0, 2.5, True, "2", None])
def test_validate_rejects_value_when_option_is_a_count(driver, name, value):
    expected = {name: ["Must be an integer from 1 to 1000000."]}

    assert validation_errors(driver, {name: value}) == expected


@pytest.mark.parametrize("name", TIME_OPTIONS)
@pytest.mark.parametrize("value", [0, 0.5, 1000, 1e-05])
def test_validate_accepts_number_when_option_is_a_time(driver, name, value):
    assert driver.validate({name: value}, [])[name] == value


@pytest.mark.parametrize("name", TIME_OPTIONS)
@pytest.mark.parametrize("value", [-1, -0.5, math.inf, math.nan, True, "0.5", None])
def test_validate_rejects_value_when_option_is_a_time(driver, name, value):
    expected = {name: ["Must be a number from 0 to 1e+12."]}

    assert validation_errors(driver, {name: value}) == expected


@pytest.mark.parametrize(("name", "value"), [(n, v) for n, vs in CHOICES.items() for v in vs])
def test_validate_accepts_value_when_it_is_a_listed_choice(driver, name, value):
    assert driver.validate({name: value}, [])[name] == value


@pytest.mark.parametrize("name", list(CHOICES))
@pytest.mark.parametrize("value", ["EndTime", "", "other", 1, None])
def test_validate_rejects_value_when_it_is_not_a_listed_choice(driver, name, value):
    assert validation_errors(driver, {name: value}) == {name: [CHOICE_ERRORS[name]]}


def test_validate_accepts_solver_when_it_is_allowed(driver):
    assert driver.validate({"solver": "icoFoam"}, [])["solver"] == "icoFoam"


def test_validate_rejects_solver_when_it_is_not_allowed(driver):
    expected = {"solver": ["interFoam is not an allowed solver."]}

    assert validation_errors(driver, {"solver": "interFoam"}) == expected


@pytest.mark.parametrize("value", ["ico Foam", "1Foam", "../icoFoam", "a" * 65, "", 5, None])
def test_validate_rejects_solver_when_it_is_not_a_plain_name(driver, value):
    expected = {"solver": ["Must be 1 to 64 letters and digits, starting with a letter."]}

    assert validation_errors(driver, {"solver": value}) == expected


@pytest.mark.parametrize("value", [0, 0.5, 3])
def test_validate_accepts_reconstruct_time_when_option_is_time(driver, value):
    options = driver.validate({"reconstruct_option": "time", "reconstruct_time": value}, [])

    assert options["reconstruct_time"] == value


@pytest.mark.parametrize("value", ["", "0.5", -1, math.nan, True])
def test_validate_rejects_reconstruct_time_when_option_is_time(driver, value):
    options = {"reconstruct_option": "time", "reconstruct_time": value}
    expected = {
        "reconstruct_time": [
            "Must be a finite number of at least 0 when reconstruct_option is time."
        ]
    }

    assert validation_errors(driver, options) == expected


@pytest.mark.parametrize("value", ["", 0.5])
def test_validate_accepts_reconstruct_time_when_option_is_not_time(driver, value):
    assert driver.validate({"reconstruct_time": value}, [])["reconstruct_time"] == value


@pytest.mark.parametrize("value", ["abc", -1, None])
def test_validate_rejects_reconstruct_time_when_option_is_not_time(driver, value):
    expected = {"reconstruct_time": ["Must be a number or an empty string."]}

    assert validation_errors(driver, {"reconstruct_time": value}) == expected


def test_validate_rejects_option_when_it_is_unknown(driver):
    expected = {"blockmesh": ["Unknown option."]}

    assert validation_errors(driver, {"blockmesh": True}) == expected


def test_validate_reports_every_option_when_several_are_wrong(driver):
    errors = validation_errors(driver, {"partitions": 0, "stopAt": "never", "extra": 1})

    assert sorted(errors) == ["extra", "partitions", "stopAt"]


def test_validate_gives_stable_codes_when_options_are_wrong(driver):
    options = {"partitions": 0, "stopAt": "never", "blockMesh": 1, "solver": "x", "extra": 1}
    with pytest.raises(ValidationError) as excinfo:
        driver.validate(options, [])

    assert excinfo.value.get_codes() == {
        "partitions": ["invalid"],
        "stopAt": ["invalid_choice"],
        "blockMesh": ["invalid_type"],
        "solver": ["not_allowed"],
        "extra": ["unknown_option"],
    }


def test_validate_rejects_tasks_when_a_reference_is_not_a_step(driver):
    tasks = [TaskSpec(reference="solver"), TaskSpec(reference="mesh")]
    expected = {
        "tasks": ["Unknown step mesh; steps are blockMesh, decomposePar, solver, reconstructPar."]
    }

    assert validation_errors(driver, {}, tasks) == expected


def test_validate_rejects_tasks_when_a_step_appears_twice(driver):
    tasks = [TaskSpec(reference="solver"), TaskSpec(reference="solver")]

    assert validation_errors(driver, {}, tasks) == {"tasks": ["More than one task for solver."]}


def test_validate_rejects_tasks_when_solver_partitions_differ_from_option(driver):
    expected = {"tasks": ["The solver task has 4 partitions but the partitions option is 2."]}

    assert validation_errors(driver, {"partitions": 2}, pyepic_tasks(4)) == expected


def test_validate_rejects_app_options_when_they_are_not_an_object(driver):
    assert validation_errors(driver, ["solver"]) == {"app_options": ["Must be an object."]}


def test_plan_runs_only_solver_when_pyepic_defaults_have_one_partition(driver):
    options = driver.validate(dict(PYEPIC_DEFAULTS), pyepic_tasks())

    assert driver.plan_steps(options, pyepic_tasks()) == [
        StepPlan(
            name="solver",
            commands=(*DEFAULT_CONTROLS, Command(("simpleFoam",))),
            num_tasks=1,
            max_runtime_hours=1,
            run_if_previous_step_fails=False,
        )
    ]


def test_plan_adds_block_mesh_when_enabled_with_one_partition(driver):
    tasks = pyepic_tasks(block_mesh=True)
    options = driver.validate({**PYEPIC_DEFAULTS, "blockMesh": True}, tasks)

    assert driver.plan_steps(options, tasks) == [
        StepPlan(
            name="blockMesh",
            commands=(Command(("blockMesh",)),),
            max_runtime_hours=1,
            run_if_previous_step_fails=True,
        ),
        StepPlan(
            name="solver",
            commands=(*DEFAULT_CONTROLS, Command(("simpleFoam",))),
            max_runtime_hours=1,
            run_if_previous_step_fails=False,
        ),
    ]


def parallel_plan(partitions):
    """Return the decompose, solve and reconstruct steps of pyepic's defaults."""
    return [
        StepPlan(
            name="decomposePar",
            commands=(Command(("decomposePar", "-force")),),
            max_runtime_hours=1,
            run_if_previous_step_fails=False,
            files={"system/decomposeParDict": decompose_par_dict(partitions)},
        ),
        StepPlan(
            name="solver",
            commands=(*DEFAULT_CONTROLS, Command(("simpleFoam", "-parallel"), parallel=True)),
            num_tasks=partitions,
            max_runtime_hours=1,
            run_if_previous_step_fails=False,
        ),
        StepPlan(
            name="reconstructPar",
            commands=(Command(("reconstructPar",)),),
            max_runtime_hours=1,
            run_if_previous_step_fails=True,
        ),
    ]


def test_plan_decomposes_and_reconstructs_when_pyepic_defaults_have_two_partitions(driver):
    options = driver.validate({**PYEPIC_DEFAULTS, "partitions": 2}, pyepic_tasks(2))

    assert driver.plan_steps(options, pyepic_tasks(2)) == parallel_plan(2)


def test_plan_starts_with_block_mesh_when_enabled_with_two_partitions(driver):
    tasks = pyepic_tasks(2, block_mesh=True)
    options = driver.validate({**PYEPIC_DEFAULTS, "partitions": 2, "blockMesh": True}, tasks)

    plans = driver.plan_steps(options, tasks)

    assert [plan.name for plan in plans] == ["blockMesh", *[p.name for p in parallel_plan(2)]]
    assert plans[1:] == parallel_plan(2)


def test_decompose_par_dict_cuts_along_x_when_given_partitions():
    text = decompose_par_dict(4)

    assert "numberOfSubdomains 4;" in text
    assert "method          simple;" in text
    assert "n               (4 1 1);" in text
    assert "delta           0.001;" in text


def test_plan_skips_decompose_and_reconstruct_when_they_are_disabled(driver):
    options = driver.validate(
        {"partitions": 2, "decomposePar": False, "reconstructPar": False}, []
    )

    assert [plan.name for plan in driver.plan_steps(options, [])] == ["solver"]


def test_plan_keeps_partitions_when_clear_partitions_is_false(driver):
    options = driver.validate({"partitions": 2, "clear_partitions": False}, [])

    decompose = driver.plan_steps(options, [])[0]

    assert decompose.commands == (Command(("decomposePar",)),)
    assert decompose.remove == ()


def test_plan_takes_runtime_from_task_when_task_has_one(driver):
    tasks = [
        TaskSpec(reference="decomposePar", runtime=2),
        TaskSpec(reference="solver", partitions=2, runtime=12),
    ]
    options = driver.validate({"partitions": 2, "reconstructPar_runtime": 3}, tasks)

    runtimes = [plan.max_runtime_hours for plan in driver.plan_steps(options, tasks)]

    assert runtimes == [2, 12, 3]


def test_plan_sets_end_time_when_it_is_positive(driver):
    options = driver.validate({"endTime": 0.2, "stopAt": "writeNow"}, [])

    solver = driver.plan_steps(options, [])[0]

    assert [command.argv for command in solver.commands] == [
        ("foamDictionary", "system/controlDict", "-entry", "stopAt", "-set", "writeNow"),
        ("foamDictionary", "system/controlDict", "-entry", "endTime", "-set", "0.2"),
        ("foamDictionary", "system/controlDict", "-entry", "startFrom", "-set", "latestTime"),
        ("simpleFoam",),
    ]


def test_plan_sets_start_time_when_starting_from_start_time(driver):
    options = driver.validate({"startFrom": "startTime", "startTime": 1000.0}, [])

    solver = driver.plan_steps(options, [])[0]

    assert [command.argv for command in solver.commands[1:3]] == [
        ("foamDictionary", "system/controlDict", "-entry", "startFrom", "-set", "startTime"),
        ("foamDictionary", "system/controlDict", "-entry", "startTime", "-set", "1000"),
    ]


def test_plan_leaves_start_time_when_starting_from_latest_time(driver):
    options = driver.validate({"startFrom": "latestTime", "startTime": 5}, [])

    solver = driver.plan_steps(options, [])[0]

    assert solver.commands == (*DEFAULT_CONTROLS, Command(("simpleFoam",)))


@pytest.mark.parametrize(
    ("option", "time", "argv"),
    [
        ("all", "", ("reconstructPar",)),
        ("latest", "", ("reconstructPar", "-latestTime")),
        ("time", 0.25, ("reconstructPar", "-time", "0.25")),
        ("time", 2.0, ("reconstructPar", "-time", "2")),
    ],
)
def test_plan_passes_reconstruct_choice_when_reconstructing(driver, option, time, argv):
    options = {"partitions": 2, "reconstruct_option": option, "reconstruct_time": time}

    reconstruct = driver.plan_steps(driver.validate(options, []), [])[-1]

    assert reconstruct.commands == (Command(argv),)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.5, "0.5"),
        (1000, "1000"),
        (1000.0, "1000"),
        (0, "0"),
        (1e-05, "1e-05"),
        (2.5e6, "2500000"),
    ],
)
def test_format_number_reads_as_openfoam_expects_when_given_ordinary_values(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize(
    ("choice", "job_failed", "excludes"),
    [
        ("no", False, ["processor*"]),
        ("no", True, ["processor*"]),
        ("error", False, ["processor*"]),
        ("error", True, []),
        ("yes", False, []),
        ("yes", True, []),
    ],
)
def test_upload_excludes_follows_choice_when_job_ends(driver, choice, job_failed, excludes):
    options = driver.validate({"upload_excludes": choice}, [])

    assert driver.upload_excludes(options, job_failed) == excludes


def test_installed_solvers_lists_foam_executables_when_scanning_a_folder(tmp_path):
    for name in ["icoFoam", "simpleFoam", "foamToVTK", "blockMesh", "my-Foam", "readmeFoam"]:
        (tmp_path / name).write_text("")
        (tmp_path / name).chmod(0o755 if name != "readmeFoam" else 0o644)
    (tmp_path / "folderFoam").mkdir()

    assert installed_solvers(tmp_path) == ["icoFoam", "simpleFoam"]


def test_driver_refuses_solver_list_when_a_name_is_not_plain():
    with pytest.raises(ValueError, match="Invalid solver names: rm -rf"):
        OpenFoamDriver(solvers=["icoFoam", "rm -rf"])
