"""The script driver: a job that runs the user's own bash script from the case folder."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from rest_framework.exceptions import ErrorDetail, ValidationError

from epic.software.base import Command, ResidualSeries, StepPlan, TaskSpec

logger = logging.getLogger(__name__)

DEFAULT_STEP_NAME = "run"
MAX_PATH_LENGTH = 255
MAX_ARGUMENTS = 64
MAX_ARGUMENT_LENGTH = 1024

# A leading "-" is refused so that bash never reads the script path as one of its own options.
_SCRIPT_PATH = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._/-]*")
_STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _error(message: str, code: str = "invalid") -> list[ErrorDetail]:
    return [ErrorDetail(message, code=code)]


def check_script_path(path: object) -> list[ErrorDetail] | None:
    """Return why path cannot name a script inside the case folder, or None if it can."""
    if not isinstance(path, str) or not path:
        return _error("Must be a non-empty string.", "invalid_type")
    if "\0" in path:
        return _error("Must not contain NUL.")
    if len(path) > MAX_PATH_LENGTH:
        return _error(f"Must be at most {MAX_PATH_LENGTH} characters.")

    if path.startswith("/"):
        return _error("Must be relative to the case folder.")
    if ".." in path.split("/"):
        return _error("Must not contain '..'.")
    if not _SCRIPT_PATH.fullmatch(path):
        return _error("Must use only A-Z a-z 0-9 . _ / - and must not start with '-'.")
    return None


def check_arguments(arguments: object) -> list[ErrorDetail] | None:
    """Return why arguments cannot be passed to the script, or None if they can."""
    if not isinstance(arguments, list):
        return _error("Must be a list of strings.", "invalid_type")
    if len(arguments) > MAX_ARGUMENTS:
        return _error(f"Must have at most {MAX_ARGUMENTS} items.")

    for argument in arguments:
        if not isinstance(argument, str):
            return _error("Must be a list of strings.", "invalid_type")
        if len(argument) > MAX_ARGUMENT_LENGTH:
            return _error(f"Each item must be at most {MAX_ARGUMENT_LENGTH} characters.")
        if "\0" in argument:
            return _error("Items must not contain NUL.")
    return None


def _check_tasks(tasks: list[TaskSpec]) -> list[ErrorDetail] | None:
    if len(tasks) > 1:
        return _error("A script job has exactly one task.")
    if tasks and not _STEP_NAME.fullmatch(tasks[0].reference):
        return _error("The task reference must be 1 to 64 of A-Z a-z 0-9 . _ - .")
    return None


class ScriptDriver:
    """Runs `/bin/bash <script> <arguments...>` as a single step in the case folder."""

    def validate(self, app_options: dict, tasks: list[TaskSpec]) -> dict:
        """Return the options with `arguments` defaulted to [], or raise ValidationError."""
        if not isinstance(app_options, dict):
            raise ValidationError({"app_options": _error("Must be an object.", "invalid_type")})

        options = {
            "script": app_options.get("script"),
            "arguments": app_options.get("arguments", []),
        }
        checks = {
            "script": check_script_path(options["script"]),
            "arguments": check_arguments(options["arguments"]),
            "tasks": _check_tasks(tasks),
        }
        errors = {name: problem for name, problem in checks.items() if problem}

        unknown = (name for name in app_options if name not in options)
        errors.update({name: _error("Unknown option.", "unknown_option") for name in unknown})
        if "script" not in app_options:
            errors["script"] = _error("This option is required.", "required")

        if errors:
            raise ValidationError(errors)
        return options

    def plan_steps(self, app_options: dict, tasks: list[TaskSpec]) -> list[StepPlan]:
        """Return the one step that runs the script with the task's partitions reserved."""
        task = tasks[0] if tasks else TaskSpec(reference=DEFAULT_STEP_NAME)
        argv = ("/bin/bash", app_options["script"], *app_options["arguments"])

        # The script runs once: it launches its own parallel work on the num_tasks it is given.
        plan = StepPlan(
            name=task.reference,
            commands=(Command(argv),),
            num_tasks=task.partitions,
            max_runtime_hours=task.runtime,
        )
        logger.debug("Planned script step %s: %s", plan.name, app_options["script"])
        return [plan]

    def upload_excludes(self, app_options: dict, job_failed: bool) -> list[str]:
        """Return no patterns: everything the script leaves in the case folder is uploaded."""
        return []

    def residuals(self, step_name: str, stdout: str | Iterable[str]) -> ResidualSeries | None:
        """Return None: a script's output has no residuals the platform understands."""
        return None
