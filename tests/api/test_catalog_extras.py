"""Desktop node types and application configuration from the catalog, used by the worker."""

import pytest

from epic.catalog.loader import apply_catalog
from epic.catalog.models import ApplicationVersion
from epic.data.paths import user_prefix
from epic.data.services import object_store
from tests.helpers import finished, run_until

DESKTOPS = {
    "desktop_node_types": [
        {"node_code": "viz-small", "name": "Small", "description": "4 cores", "cores": 4},
        {"node_code": "viz-gpu", "name": "GPU", "description": "GPU node", "cores": 8, "gpus": 1},
    ]
}


@pytest.mark.django_db
def test_desktop_node_types_come_from_the_catalog(alice):
    apply_catalog(DESKTOPS)

    listing = alice.get("/api/v2/catalog/desktop/").json()
    detail = alice.get("/api/v2/catalog/desktop/viz-gpu/").json()

    assert [row["node_code"] for row in listing["results"]] == ["viz-small", "viz-gpu"]
    assert detail == {
        "node_code": "viz-gpu",
        "name": "GPU",
        "description": "GPU node",
        "cores": 8,
        "gpus": 1,
    }
    assert alice.get("/api/v2/catalog/desktop/nope/").status_code == 404


@pytest.mark.django_db
def test_configuration_shows_scripts_and_environment(alice):
    ApplicationVersion.objects.filter(app_code="script").update(
        environment={"SOLVER_HOME": "/opt/solver"},
        start_script="echo starting\n",
        environment_script="export GREETING=hello\n",
    )

    response = alice.get("/api/v2/config/script/local/")

    assert response.status_code == 200
    config = response.json()
    assert config["application_configuration"]["start_script"] == {
        "name": "start.sh",
        "content": "echo starting\n",
    }
    assert config["application_configuration"]["name"] == "script"
    assert config["environment_script"]["content"] == "export GREETING=hello\n"
    assert config["env_variables"] == [{"variable_name": "SOLVER_HOME", "value": "/opt/solver"}]


@pytest.mark.django_db
def test_configuration_of_a_version_not_on_the_queue_is_not_found(alice):
    assert alice.get("/api/v2/config/script/nowhere/").status_code == 404
    assert alice.get("/api/v2/config/nothing/local/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_worker_runs_the_configured_scripts_around_the_step(alice, submit_script, worker):
    ApplicationVersion.objects.filter(app_code="script").update(
        environment={"SOLVER_HOME": "/opt/solver"},
        start_script="echo start > started.txt\n",
        stop_script="echo stop > stopped.txt\n",
        environment_script="export GREETING=hello\n",
    )
    job_id = submit_script("case", 'echo "$GREETING $SOLVER_HOME" > seen.txt\n')

    run_until(worker, finished(job_id))

    store, prefix = object_store(), user_prefix(alice.user) + "case/"
    assert store.open(prefix + "seen.txt").read() == b"hello /opt/solver\n"
    assert store.open(prefix + "started.txt").read() == b"start\n"
    assert store.open(prefix + "stopped.txt").read() == b"stop\n"
