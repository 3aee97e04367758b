"""How the script driver checks its options and plans its one step, and how drivers are found."""

import pytest
from rest_framework.exceptions import ValidationError

from epic.software.base import Command, StepPlan, TaskSpec
from epic.software.openfoam import OpenFoamDriver
from epic.software.registry import driver_names, get_driver
from epic.software.script import ScriptDriver


@pytest.fixture
def driver():
    return ScriptDriver()


def validation_errors(driver, options, tasks=()):
    with pytest.raises(ValidationError) as excinfo:
        driver.validate(options, list(tasks))
    return excinfo.value.detail


@pytest.mark.parametrize("script", ["run.sh", "scripts/run-case_1.sh", "./run.sh", "a" * 255])
def test_validate_accepts_script_when_path_is_plain_and_relative(driver, script):
    assert driver.validate({"script": script}, []) == {"script": script, "arguments": []}


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("/etc/passwd", "Must be relative to the case folder."),
        ("../run.sh", "Must not contain '..'."),
        ("scripts/../../run.sh", "Must not contain '..'."),
        ("run\0.sh", "Must not contain NUL."),
        ("a" * 256, "Must be at most 255 characters."),
        ("run me.sh", "Must use only A-Z a-z 0-9 . _ / - and must not start with '-'."),
        ("run;rm.sh", "Must use only A-Z a-z 0-9 . _ / - and must not start with '-'."),
        ("-c", "Must use only A-Z a-z 0-9 . _ / - and must not start with '-'."),
        ("", "Must be a non-empty string."),
        (["run.sh"], "Must be a non-empty string."),
    ],
)
def test_validate_rejects_script_when_path_is_unsafe(driver, script, reason):
    assert validation_errors(driver, {"script": script}) == {"script": [reason]}


def test_validate_requires_script_when_it_is_missing(driver):
    assert validation_errors(driver, {"arguments": []}) == {"script": ["This option is required."]}


@pytest.mark.parametrize("arguments", [[], ["--steps", "10"], ["x"] * 64, ["a" * 1024]])
def test_validate_accepts_arguments_when_within_limits(driver, arguments):
    options = driver.validate({"script": "run.sh", "arguments": arguments}, [])

    assert options["arguments"] == arguments


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ("--steps 10", "Must be a list of strings."),
        ([1], "Must be a list of strings."),
        (["x"] * 65, "Must have at most 64 items."),
        (["a" * 1025], "Each item must be at most 1024 characters."),
        (["a\0b"], "Items must not contain NUL."),
    ],
)
def test_validate_rejects_arguments_when_outside_limits(driver, arguments, reason):
    options = {"script": "run.sh", "arguments": arguments}

    assert validation_errors(driver, options) == {"arguments": [reason]}


def test_validate_rejects_option_when_it_is_unknown(driver):
    options = {"script": "run.sh", "shell": "zsh"}

    assert validation_errors(driver, options) == {"shell": ["Unknown option."]}


def test_validate_rejects_tasks_when_there_are_two(driver):
    tasks = [TaskSpec(reference="one"), TaskSpec(reference="two")]

    assert validation_errors(driver, {"script": "run.sh"}, tasks) == {
        "tasks": ["A script job has exactly one task."]
    }


@pytest.mark.parametrize("reference", ["../log", "a b", "", "x" * 65])
def test_validate_rejects_tasks_when_reference_is_not_a_step_name(driver, reference):
    tasks = [TaskSpec(reference=reference)]

    assert validation_errors(driver, {"script": "run.sh"}, tasks) == {
        "tasks": ["The task reference must be 1 to 64 of A-Z a-z 0-9 . _ - ."]
    }


def test_plan_runs_script_with_bash_when_task_is_given(driver):
    tasks = [TaskSpec(reference="mesh", partitions=8, runtime=3)]
    options = driver.validate({"script": "run.sh", "arguments": ["-n", "8"]}, tasks)

    assert driver.plan_steps(options, tasks) == [
        StepPlan(
            name="mesh",
            commands=(Command(("/bin/bash", "run.sh", "-n", "8")),),
            num_tasks=8,
            max_runtime_hours=3,
        )
    ]


def test_plan_names_step_run_when_there_is_no_task(driver):
    options = driver.validate({"script": "run.sh"}, [])

    assert driver.plan_steps(options, []) == [
        StepPlan(name="run", commands=(Command(("/bin/bash", "run.sh")),))
    ]


def test_script_has_no_excludes_or_residuals_when_job_ends(driver):
    options = driver.validate({"script": "run.sh"}, [])

    assert driver.upload_excludes(options, job_failed=True) == []
    assert driver.residuals("run", "Time = 1\n") is None


def test_driver_names_lists_openfoam_and_script_when_asked():
    assert driver_names() == ["openfoam", "script"]


def test_get_driver_returns_one_shared_instance_when_asked_twice():
    assert get_driver("script") is get_driver("script")
    assert isinstance(get_driver("openfoam"), OpenFoamDriver)


def test_get_driver_raises_key_error_when_name_is_unknown():
    with pytest.raises(KeyError):
        get_driver("fluent")
