"""Drive a running EPIC server with pyepic, as an engineer would; print what was observed.

Runs inside pyepic's own virtualenv, so it imports nothing from the product. Usage:
    python pyepic_flow.py SCENARIO CASE_DIR WORK_DIR [PARTITIONS [QUEUE_CODE]]
with EPIC_URL, EPIC_TOKEN and AWS_ENDPOINT_URL_S3 in the environment. SCENARIO is
`run`, `fail` or `cancel`; QUEUE_CODE defaults to `local`. The observations are printed
as one JSON object.
"""

import json
import os
import sys
import time
from pathlib import Path

from pyepic import EPICClient
from pyepic.applications.openfoam import OpenFoamJob

POLL_SECONDS = 0.5
TIMEOUT_SECONDS = 180


def wait_until(predicate, timeout=TIMEOUT_SECONDS):
    """Poll until predicate() returns a truthy value, and return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(POLL_SECONDS)
    raise TimeoutError("gave up waiting")


def submit(client, folder, partitions, queue_code, end_time=0):
    """Quote and submit an icoFoam job on the case at epic://folder/."""
    job = OpenFoamJob("openfoam-1912", f"cavity {folder}", f"epic://{folder}/")
    job.blockMesh.execute = True
    job.solver.application = "icoFoam"
    job.solver.partitions = partitions
    job.solver.endTime = end_time
    job.solver.runtime = 1
    job.decomposePar.partitions = 1
    job.reconstructPar.partitions = 1

    quote = client.job.get_quote(job.get_job_spec())
    spec = job.get_job_create_spec(queue_code)
    created = client.job.submit(spec)
    return quote, created[0]


def job_summary(client, job_id):
    """The job's final state and its steps' names, statuses, exit codes and logs."""
    job = client.job.get_details(job_id)
    steps = []
    for step in job.job_steps:
        logs = client.job.get_step_logs(step.id)
        steps.append(
            {
                "name": step.step_name,
                "status": step.status,
                "exit_code": step.exit_code,
                "stdout_tail": logs.stdout[-2000:],
                "stderr_tail": logs.stderr[-2000:],
            }
        )
    return {
        "id": job.id,
        "status": job.status,
        "finished": job.finished,
        "steps": steps,
        "cost": job.cost,
    }


def scenario_run(client, case_dir, work_dir, partitions, queue_code):
    """Upload, quote, submit, follow, read residuals and download the results."""
    folder = f"cavity-{partitions}"
    client.data.sync(str(case_dir), f"epic://{folder}/")
    listing = [item.name for item in client.data.ls(f"epic://{folder}/")]
    quote, job = submit(client, folder, partitions, queue_code)
    wait_until(lambda: client.job.get_details(job.id).finished)

    names = client.job.get_job_residual_names(job.id)
    values = client.job.get_job_residual_values(job.id, ["Ux", "Uy", "p"])
    download = Path(work_dir) / f"download-{partitions}"
    client.data.sync(f"epic://{folder}/", str(download))
    return {
        "listing": sorted(listing),
        "quote_queues": [total.queue_code for total in quote.totals],
        "quote_total": str(quote.totals[0].total.amount) if quote.totals else None,
        "job": job_summary(client, job.id),
        "residual_names": names,
        "residual_lengths": {item.variable_name: len(item.values) for item in values},
        "downloaded": sorted(
            str(path.relative_to(download)) for path in download.rglob("*") if path.is_file()
        ),
    }


def scenario_fail(client, case_dir, work_dir, partitions, queue_code):
    """A case without its mesh dictionary: blockMesh fails, the solver never runs."""
    folder = "broken"
    client.data.sync(str(case_dir), f"epic://{folder}/")
    client.data.delete(f"epic://{folder}/system/blockMeshDict")
    _, job = submit(client, folder, partitions, queue_code)
    wait_until(lambda: client.job.get_details(job.id).finished)
    return {"job": job_summary(client, job.id)}


def scenario_cancel(client, case_dir, work_dir, partitions, queue_code):
    """A long run, cancelled while its solver runs; the results so far are uploaded."""
    folder = "long"
    client.data.sync(str(case_dir), f"epic://{folder}/")
    _, job = submit(client, folder, partitions, queue_code, end_time=100000)

    def solver_running():
        steps = client.job.get_details(job.id).job_steps
        return any(step.step_name == "solver" and step.status == "Running" for step in steps)

    wait_until(solver_running)
    time.sleep(2)
    client.job.cancel(job.id)
    wait_until(lambda: client.job.get_details(job.id).finished, timeout=60)
    listing = [item.name for item in client.data.ls(f"epic://{folder}/")]
    return {"job": job_summary(client, job.id), "listing": sorted(listing)}


def main():
    """Run one scenario and print its observations."""
    scenario, case_dir, work_dir = sys.argv[1:4]
    partitions = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    queue_code = sys.argv[5] if len(sys.argv) > 5 else "local"
    client = EPICClient(os.environ["EPIC_TOKEN"], connection_url=os.environ["EPIC_URL"])
    run = {"run": scenario_run, "fail": scenario_fail, "cancel": scenario_cancel}[scenario]
    print(json.dumps(run(client, Path(case_dir), Path(work_dir), partitions, queue_code)))


if __name__ == "__main__":
    main()
