"""The default catalog finds the Slurm partitions; `epic admin cluster show` reports on them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from epic.catalog.defaults import ensure_default_catalog
from epic.catalog.models import ApplicationVersion, Queue
from tests.e2e.servers import EPIC, server_env


@pytest.mark.django_db
def test_default_catalog_has_a_queue_per_partition_shaped_like_its_nodes(node_shape):
    partition, cpus = node_shape

    ensure_default_catalog()

    queue = Queue.objects.get(queue_code=f"slurm-{partition}")
    assert (queue.cluster.name, queue.cluster.backend) == ("slurm", "slurm")
    assert queue.partition == partition
    assert queue.cores_per_node * queue.threads_per_core == cpus
    assert queue.max_allocation == queue.cores_per_node * queue.node_count
    assert not queue.maintenance_mode
    script = ApplicationVersion.objects.get(app_code="script")
    assert queue in script.queues.all()


@pytest.mark.django_db
@pytest.mark.skipif(shutil.which("icoFoam") is None, reason="OpenFOAM is not installed")
def test_default_catalog_offers_openfoam_on_the_slurm_queues(node_shape):
    partition, _ = node_shape

    ensure_default_catalog()

    openfoam = ApplicationVersion.objects.get(app_code="openfoam-1912")
    assert f"slurm-{partition}" in [queue.queue_code for queue in openfoam.queues.all()]


def test_cluster_show_prints_health_partitions_nodes_and_queues(tmp_path, node_shape):
    partition, cpus = node_shape

    shown = subprocess.run(
        [str(EPIC), "admin", "cluster", "show"],
        env=server_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        check=False,
    )

    assert shown.returncode == 0, shown.stderr
    assert "Cluster local (This machine)" in shown.stdout
    assert "Cluster slurm (Slurm)" in shown.stdout
    assert "is UP" in shown.stdout
    assert f"    {partition}: up, " in shown.stdout
    assert f", {cpus} CPUs, " in shown.stdout
    assert f"    slurm-{partition} -> partition {partition}\n" in shown.stdout


@pytest.mark.django_db
def test_the_readmes_script_job_body_is_accepted_on_the_default_slurm_queue(alice, upload):
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    body = json.loads(readme.split("```json\n", 1)[1].split("```", 1)[0])
    upload(alice.user, "case/run.sh", "true\n")

    response = alice.post("/api/v2/job/", body, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()[0]["app"] == "Script"
