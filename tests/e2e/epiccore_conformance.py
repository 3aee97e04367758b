"""Call every EPIC API operation the server implements through epiccore; report what each lost.

Runs inside pyepic's own virtualenv, so it imports nothing from the product. Usage:
    python epiccore_conformance.py
with EPIC_URL, EPIC_TOKEN (a member of a team) and EPIC_OWNER_TOKEN (an owner of the same
team) in the environment. The server must run no worker at first, so that submitted jobs stay
pending: once it needs jobs to run, the script prints the line `start-worker` and waits for a
line on stdin. Last, it prints one JSON object: per operation, whether epiccore deserialised
the answer, the error if not, the fields it lost or converted, and the fields it does not know.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from types import SimpleNamespace

import boto3
import epiccore
from botocore.config import Config
from dateutil.parser import parse as parse_date
from epiccore.models import (
    DataSpec,
    EnvVar,
    JobAppOptions,
    JobArraySpec,
    JobClusterSpec,
    JobConfiguration,
    JobDataBinding,
    JobSpec,
    JobstepResponseRequest,
    JobTaskSpec,
    Project,
    WritableLicense,
)

FOLDER = "conformance"
RUN_SCRIPT = "echo conformance run\nsleep 3\necho done\n"
POLL_SECONDS = 0.2
TIMEOUT_SECONDS = 120
SHOWN_CHARACTERS = 200
PRIMITIVES = {"str": str, "int": int, "float": (int, float), "bool": bool}
MISSING = object()


class NoAnswerError(Exception):
    """An operation got no usable answer, so the operations that need it cannot run."""


@dataclass
class Outcome:
    """What one call's answer showed: deserialised or not, and how it compares with its JSON."""

    operation: str
    ok: bool = True
    error: str | None = None
    lost: list[dict] = field(default_factory=list)
    coerced: list[dict] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def shown(value) -> str:
    """A short text of a value for the report."""
    try:
        text = json.dumps(value)
    except TypeError:
        text = repr(value)
    return text[:SHOWN_CHARACTERS]


def joined(path: str, key) -> str:
    """The report's name of a field: dotted keys, list positions in brackets."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def numbers_equal(text: str, number) -> bool:
    """Whether a number sent as a string kept its value when epiccore made it a number."""
    try:
        return Decimal(text) == Decimal(str(number))
    except InvalidOperation:
        return False


def dates_equal(text, value, declared: str) -> bool:
    """Whether a date or datetime string means what epiccore parsed it into."""
    if not isinstance(text, str):
        return False
    try:
        parsed = parse_date(text)
    except (ValueError, OverflowError):
        return False
    return (parsed.date() if declared == "date" else parsed) == value


def leaf_verdict(raw, value, declared: str) -> str:
    """`same`, `coerced` (another JSON type, same meaning) or `lost` for one scalar field."""
    if raw is None:
        return "same" if value is None else "lost"
    if declared in ("date", "datetime"):
        return "same" if dates_equal(raw, value, declared) else "lost"
    if declared not in PRIMITIVES:
        return "same" if value == raw else "lost"

    wrong_bool = isinstance(raw, bool) and declared != "bool"
    if isinstance(raw, PRIMITIVES[declared]) and not wrong_bool:
        return "same" if value == raw else "lost"
    if declared == "str" and isinstance(raw, int | float) and not isinstance(raw, bool):
        return "coerced" if value == str(raw) else "lost"
    if declared in ("int", "float") and isinstance(raw, str):
        return "coerced" if numbers_equal(raw, value) else "lost"
    return "lost"


class Comparison:
    """Walks an answer's JSON beside the object epiccore made of it, field by field."""

    def __init__(self, outcome: Outcome):
        self.outcome = outcome

    def walk(self, raw, value, declared: str, path: str) -> None:
        """Compare `raw` with `value`, which epiccore declares as `declared`."""
        if declared.startswith("list["):
            self.walk_list(raw, value, declared[len("list[") : -1], path)
        elif hasattr(epiccore.models, declared):
            self.walk_model(raw, value, getattr(epiccore.models, declared), path)
        elif value is not MISSING:
            self.check_leaf(raw, value, declared, path)

    def walk_list(self, raw, value, item_type: str, path: str) -> None:
        """Compare a JSON array with the list epiccore made of it, item by item."""
        if raw is None or not isinstance(raw, list):
            self.check_leaf(raw, value, f"list[{item_type}]", path)
            return
        if value is not MISSING and (not isinstance(value, list) or len(value) != len(raw)):
            self.lose(path, f"list[{item_type}]", shown(raw), value)
            return
        for index, item in enumerate(raw):
            kept = MISSING if value is MISSING else value[index]
            self.walk(item, kept, item_type, joined(path, index))

    def walk_model(self, raw, value, model: type, path: str) -> None:
        """Compare a JSON object with the model epiccore made of it, key by key."""
        if not isinstance(raw, dict):
            if value is not MISSING and not (raw is None and value is None):
                self.lose(path, model.__name__, shown(raw), value)
            return
        attributes = {key: name for name, key in model.attribute_map.items()}
        if raw and not attributes.keys() & raw.keys() and value is not MISSING:
            expected = f"{model.__name__}: an object with keys {sorted(attributes)}"
            self.lose(path, expected, f"an object with keys {sorted(raw)}", value)
        if value is not MISSING and not isinstance(value, model):
            self.lose(path, model.__name__, shown(raw), value)
            return

        for key, item in raw.items():
            if key not in attributes:
                self.outcome.unknown.append(joined(path, key))
                continue
            name = attributes[key]
            kept = MISSING if value is MISSING else getattr(value, name)
            self.walk(item, kept, model.openapi_types[name], joined(path, key))

    def check_leaf(self, raw, value, declared: str, path: str) -> None:
        """Record a scalar field that epiccore lost or converted to another type."""
        if value is MISSING:
            return
        verdict = leaf_verdict(raw, value, declared)
        if verdict == "lost":
            self.lose(path, declared, shown(raw), value)
        elif verdict == "coerced":
            entry = {"field": path, "expected": declared, "sent": shown(raw), "kept": shown(value)}
            self.outcome.coerced.append(entry)

    def lose(self, path: str, expected: str, sent: str, value) -> None:
        """Record a field whose value epiccore did not keep."""
        entry = {"field": path or "(body)", "expected": expected, "sent": sent}
        self.outcome.lost.append({**entry, "kept": shown(value)})


def declared_type(method) -> str:
    """The answer type a generated operation declares in its docstring, e.g. `list[Job]`."""
    return re.search(r":rtype: (\S+)", method.__doc__).group(1)


def describe(error: Exception) -> str:
    """The text of an error, with the HTTP status and body when the server refused."""
    if isinstance(error, epiccore.ApiException) and error.status:
        return f"HTTP {error.status}: {str(error.body)[:500]}"
    return f"{type(error).__name__}: {error}"[:1000]


def raw_body(response):
    """The JSON of a response epiccore received, or None when it had no body."""
    data = response.data
    text = data.decode() if isinstance(data, bytes) else data
    return json.loads(text) if text else None


class Conformance:
    """Calls operations through epiccore and keeps the outcome of each."""

    def __init__(self):
        self.outcomes: dict[str, Outcome] = {}
        self.aborted: dict[str, str] = {}
        self.job_statuses: dict[str, str] = {}

    def call(self, label: str, method, *args, **kwargs):
        """Call one generated operation, record its outcome under `label`, return its JSON.

        Raises NoAnswerError when the server refused or could not be reached, since then
        there is no answer to compare nor to carry on with.
        """
        outcome = Outcome(operation=label.split(":")[0])
        self.outcomes[label] = outcome
        client = method.__self__.api_client
        client.last_response = None
        try:
            value = method(*args, **kwargs)
        except Exception as error:  # whatever epiccore raised is the finding
            value = MISSING
            outcome.ok, outcome.error = False, describe(error)
        if client.last_response is None:
            raise NoAnswerError(f"{label}: {outcome.error}")

        raw = raw_body(client.last_response)
        declared = declared_type(method)
        if declared != "None":
            Comparison(outcome).walk(raw, value, declared, "")
        return raw

    def attempt(self, group, *args):
        """Run a group of operations; a failure stops that group only, and is recorded."""
        try:
            return group(self, *args)
        except Exception as error:  # one group's failure must not hide the others' outcomes
            self.aborted[group.__name__] = f"{type(error).__name__}: {error}"
            return None

    def report(self) -> dict:
        """The outcomes of every call, the groups that stopped early and how the jobs ended."""
        outcomes = {label: asdict(outcome) for label, outcome in self.outcomes.items()}
        return {"operations": outcomes, "aborted": self.aborted, "jobs": self.job_statuses}


def apis(url: str, token: str) -> SimpleNamespace:
    """epiccore's generated API classes on one client that sends `token`."""
    configuration = epiccore.Configuration(host=url, api_key={"Bearer": f"Bearer {token}"})
    client = epiccore.ApiClient(configuration)
    return SimpleNamespace(
        catalog=epiccore.CatalogApi(client),
        config=epiccore.ConfigApi(client),
        data=epiccore.DataApi(client),
        job=epiccore.JobApi(client),
        jobrefresh=epiccore.JobrefreshApi(client),
        jobstep=epiccore.JobstepApi(client),
        licenses=epiccore.LicensesApi(client),
        profile=epiccore.ProfileApi(client),
        projects=epiccore.ProjectsApi(client),
        teams=epiccore.TeamsApi(client),
    )


def first(page: dict, operation: str) -> dict:
    """The first result of a list answer; an empty list would leave nothing to compare."""
    if not page or not page.get("results"):
        raise NoAnswerError(f"{operation} listed nothing")
    return page["results"][0]


def check_account(run: Conformance, member) -> None:
    """Profile settings and teams."""
    run.call("profile_settings_list", member.profile.profile_settings_list)
    teams = run.call("teams_list", member.teams.teams_list, name="acme", role="user")
    team = first(teams, "teams_list")
    run.call("teams_read", member.teams.teams_read, str(team["id"]))


def check_catalog(run: Conformance, member) -> None:
    """Applications, queues, desktop node types and an application's configuration."""
    catalog = member.catalog
    applications = run.call(
        "catalog_applications_list", catalog.catalog_applications_list, product_name="Script"
    )
    application = first(applications, "catalog_applications_list")
    name = application["product"]["name"]
    run.call("catalog_applications_read", catalog.catalog_applications_read, name)

    queues = run.call(
        "catalog_clusters_list",
        catalog.catalog_clusters_list,
        cluster_name="local",
        allowed_apps="script",
    )
    queue = first(queues, "catalog_clusters_list")
    run.call("catalog_clusters_read", catalog.catalog_clusters_read, queue["queue_code"])

    desktops = run.call("catalog_desktop_list", catalog.catalog_desktop_list)
    desktop = first(desktops, "catalog_desktop_list")
    run.call("catalog_desktop_read", catalog.catalog_desktop_read, desktop["node_code"])
    run.call("config_read", member.config.config_read, "script", queue["queue_code"])


def check_projects(run: Conformance, member, owner) -> int:
    """List, read and (as an owner) change the team's project; return its id."""
    projects = run.call("projects_list", member.projects.projects_list, name="CONF")
    project = first(projects, "projects_list")
    run.call("projects_read", member.projects.projects_read, str(project["pk"]))
    change = Project(description="Changed through epiccore.", closed=False)
    run.call(
        "projects_partial_update",
        owner.projects.projects_partial_update,
        str(project["pk"]),
        change,
    )
    return project["pk"]


def check_licences(run: Conformance, owner) -> None:
    """Licence templates, then a licence created, listed, read and deleted by an owner."""
    licenses = owner.licenses
    templates = run.call("licenses_templates", licenses.licenses_templates)
    application = template_application(templates)
    licence = WritableLicense(
        display_name="Conformance licence",
        description="Made by the epiccore conformance test.",
        environment=[EnvVar(variable_name="LM_LICENSE_FILE", value="27000@licences.example.org")],
        application=application,
    )
    created = run.call("licenses_create", licenses.licenses_create, licence)
    run.call("licenses_list", licenses.licenses_list)
    run.call("licenses_read", licenses.licenses_read, created["id"])
    run.call("licenses_delete", licenses.licenses_delete, created["id"])


def template_application(templates) -> int | None:
    """The application id of the first licence template, whichever shape the answer has."""
    items = templates.get("results", [templates]) if isinstance(templates, dict) else []
    for item in items:
        if isinstance(item, dict) and item.get("application"):
            return item["application"]["pk"]
    return None


def check_data(run: Conformance, member) -> None:
    """Upload a case with the session's credentials, then list and read its files and folders."""
    session = run.call("data_session_list", member.data.data_session_list)
    upload_case(session)

    data = member.data
    path = f"epic://{FOLDER}/"
    files = run.call("data_file_list", data.data_file_list, name="run", path=path)
    run.call("data_file_read", data.data_file_read, str(first(files, "data_file_list")["id"]))
    folders = run.call("data_folder_list", data.data_folder_list, path=path)
    folder = first(folders, "data_folder_list")
    run.call("data_folder_read", data.data_folder_read, str(folder["id"]))


def upload_case(session: dict) -> None:
    """Put the job's script and a note in a subfolder into the caller's data store."""
    token = session["session_token"]
    store = boto3.client(
        "s3",
        endpoint_url=session["s3_endpoint_url"],
        region_name=session["aws_region"],
        aws_access_key_id=token["aws_key_id"],
        aws_secret_access_key=token["aws_secret_key"],
        aws_session_token=token["aws_session_token"],
        config=Config(s3={"addressing_style": "path"}),
    )
    prefix = session["s3_obj_key"] + FOLDER
    files = {"run.sh": RUN_SCRIPT, "notes/readme.txt": "Uploaded for the conformance test.\n"}
    for name, text in files.items():
        store.put_object(
            Bucket=session["s3_location"],
            Key=f"{prefix}/{name}",
            Body=text.encode(),
            Metadata={"purpose": "conformance"},
        )


def binding(name: str, project: int | None) -> JobDataBinding:
    """One script job on the local queue, reading the uploaded folder."""
    return JobDataBinding(
        name=name,
        spec=job_spec(project),
        app_options={"script": "run.sh"},
        cluster=JobClusterSpec(queue_code="local"),
        input_data=DataSpec(path=f"epic://{FOLDER}/"),
    )


def job_spec(project: int | None) -> JobSpec:
    """The script application with its one task, `run`."""
    task = JobTaskSpec(reference="run", partitions=1, runtime=1, task_distribution="core")
    return JobSpec(app_code="script", project=project, tasks=[task], queue_code="local")


def job_config() -> JobConfiguration:
    """Upload results when a job completes."""
    return JobConfiguration(upload=["complete"], overwrite_existing=True, data_sync_interval=0)


def check_jobs(run: Conformance, member, project: int | None) -> None:
    """Quote and submit three jobs, act on them while pending, then follow one to its end."""
    run.call("job_quote", member.job.job_quote, job_spec(project))
    spec = JobArraySpec(
        name="conformance",
        config=job_config(),
        jobs=[binding(name, project) for name in ("run", "cancel-job", "cancel-step")],
    )
    created = run.call("job_create", member.job.job_create, spec)
    runs, cancelled, step_cancelled = (job["id"] for job in created)
    check_pending_jobs(run, member, created[0]["array"], runs, cancelled, step_cancelled)

    print("start-worker", flush=True)
    sys.stdin.readline()
    step = wait_for_step(member, runs)
    run.call(
        "jobrefresh_create:while-running",
        member.jobrefresh.jobrefresh_create,
        JobstepResponseRequest(job_step=step["id"]),
    )
    for job in created:
        ended = wait_until(lambda job_id=job["id"]: finished(member, job_id))
        run.job_statuses[job["name"]] = ended["status"]
    check_finished_job(run, member, runs)


def check_pending_jobs(run: Conformance, member, array, runs, cancelled, step_cancelled) -> None:
    """List and read pending jobs and steps, change one job, cancel another and a step."""
    job = member.job
    run.call("job_list", job.job_list, job_array=str(array))
    run.call("job_read:pending", job.job_read, runs)
    options = {"script": "run.sh", "arguments": ["--updated"]}
    change = JobAppOptions(app_options=options, config=job_config())
    run.call("job_partial_update", job.job_partial_update, str(runs), change)

    steps = run.call("jobstep_list:pending", member.jobstep.jobstep_list, parent_job=str(runs))
    step_id = str(first(steps, "jobstep_list")["id"])
    run.call("jobstep_read:pending", member.jobstep.jobstep_read, step_id)
    run.call("job_cancel", job.job_cancel, str(cancelled), {})
    step = first(member_steps(member, step_cancelled), "jobstep_list")
    run.call("jobstep_cancel", member.jobstep.jobstep_cancel, str(step["id"]), {})


def check_finished_job(run: Conformance, member, job_id: int) -> None:
    """Read a job that ran, its steps, their logs and refreshes, and its residuals."""
    run.call("job_read:finished", member.job.job_read, job_id)
    run.call("job_residuals_read", member.job.job_residuals_read, job_id)
    jobstep = member.jobstep
    steps = run.call("jobstep_list:finished", jobstep.jobstep_list, parent_job=str(job_id))
    step_id = str(first(steps, "jobstep_list")["id"])
    run.call("jobstep_read:finished", jobstep.jobstep_read, step_id)
    run.call("jobstep_logs_read", jobstep.jobstep_logs_read, step_id)
    request = JobstepResponseRequest(job_step=int(step_id))
    refresh = run.call("jobrefresh_create:finished", member.jobrefresh.jobrefresh_create, request)
    run.call("jobrefresh_read", member.jobrefresh.jobrefresh_read, refresh["id"])


def read_job(member, job_id: int) -> dict:
    """A job's JSON, read past epiccore's models so that waiting never depends on them."""
    return raw_body(member.job.job_read(job_id, _preload_content=False))


def finished(member, job_id: int) -> dict | None:
    """The job's JSON once it has ended, else None."""
    job = read_job(member, job_id)
    return job if job["finished"] else None


def member_steps(member, job_id: int) -> dict:
    """A job's steps as JSON, read past epiccore's models."""
    answer = member.jobstep.jobstep_list(parent_job=str(job_id), _preload_content=False)
    return raw_body(answer)


def wait_for_step(member, job_id: int) -> dict:
    """The job's first step once it runs or has ended."""

    def started():
        step = member_steps(member, job_id)["results"][0]
        return step if step["status"] not in ("Pending", "Queued") else None

    return wait_until(started)


def wait_until(predicate):
    """Poll until predicate() returns a truthy value, and return it."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"gave up waiting after {TIMEOUT_SECONDS}s")


def main():
    """Call every operation, then print the report as one JSON object."""
    url = os.environ["EPIC_URL"]
    member = apis(url, os.environ["EPIC_TOKEN"])
    owner = apis(url, os.environ["EPIC_OWNER_TOKEN"])
    run = Conformance()

    run.attempt(check_account, member)
    run.attempt(check_catalog, member)
    project = run.attempt(check_projects, member, owner)
    run.attempt(check_licences, owner)
    run.attempt(check_data, member)
    if "check_data" not in run.aborted:
        run.attempt(check_jobs, member, project)
    print(json.dumps(run.report()))


if __name__ == "__main__":
    main()
