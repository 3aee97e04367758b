"""The catalog: the default one measured from this machine, files loaded idempotently."""

import os
import shutil
import textwrap
from decimal import Decimal

import pytest

from epic.catalog.defaults import ensure_default_catalog
from epic.catalog.loader import CatalogError, load_catalog_file
from epic.catalog.models import Application, ApplicationVersion, Cluster, Queue

pytestmark = pytest.mark.django_db

CATALOG = textwrap.dedent(
    """
    clusters:
      - name: big
        backend: local
    queues:
      - queue_code: big-q
        name: Big queue
        cluster: big
        max_runtime: 48
        max_allocation: 64
        cpus: 2
        cores_per_cpu: 32
        memory: 256 GiB
        core_hour_price: 0.1
    applications:
      - product_name: Scripts
        versions:
          - app_code: script-2
            version: "2"
            driver: script
            queues: [big-q]
    """
)


def test_default_catalog_has_a_queue_of_this_machine():
    assert ensure_default_catalog() is True

    queue = Queue.objects.get(queue_code="local")
    cores = len(os.sched_getaffinity(0))
    assert queue.max_allocation == cores
    assert queue.cores_per_cpu == cores
    assert queue.core_hour_price > 0
    assert ensure_default_catalog() is False


@pytest.mark.skipif(shutil.which("icoFoam") is None, reason="OpenFOAM is not installed")
def test_default_catalog_offers_openfoam_where_installed():
    ensure_default_catalog()

    version = ApplicationVersion.objects.get(app_code="openfoam-1912")
    assert version.driver == "openfoam"
    assert "local" in [queue.queue_code for queue in version.queues.all()]


def test_loading_a_catalog_file_twice_changes_nothing(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)

    load_catalog_file(path)
    first = list(Queue.objects.values())
    load_catalog_file(path)

    assert list(Queue.objects.values()) == first
    assert Cluster.objects.count() == 1
    assert Application.objects.count() == 1
    assert Queue.objects.get().core_hour_price == Decimal("0.1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("queues: [{queue_code: q, cluster: nope, max_allocation: 1}]", "no cluster named"),
        ("clusters: [{name: c, backend: pbs}]", "backend must be one of"),
        ("clusters: 3", "must be a list"),
        (
            "applications: [{product_name: A, versions: [{app_code: a, version: 1, driver: x}]}]",
            "driver must be one of",
        ),
        ("{: bad", "not valid YAML"),
    ],
)
def test_bad_catalog_file_is_refused_and_changes_nothing(tmp_path, text, message):
    path = tmp_path / "catalog.yaml"
    path.write_text(text)

    with pytest.raises(CatalogError, match=message):
        load_catalog_file(path)
    assert Cluster.objects.count() == 0


def test_applications_list_shows_versions_and_queues(alice):
    response = alice.get("/api/v2/catalog/applications/", {"product_name": "Script"})

    assert response.status_code == 200
    result = response.json()["results"][0]
    assert result["product"]["name"] == "Script"
    assert result["versions"][0]["app_code"] == "script"
    assert "local" in result["versions"][0]["available_on"]
    assert result["permission_to_use"] is True


def test_application_read_by_product_name(alice):
    response = alice.get("/api/v2/catalog/applications/Script/")

    assert response.status_code == 200
    assert response.json()["version"][0]["app_code"] == "script"


def test_cluster_read_shows_node_shape(alice):
    response = alice.get("/api/v2/catalog/clusters/local/")

    assert response.status_code == 200
    queue = response.json()
    cores = len(os.sched_getaffinity(0))
    assert queue["queue_code"] == "local"
    assert queue["cluster_name"] == "local"
    assert queue["max_allocation"] == cores
    assert queue["resource_config"]["cores_per_cpu"] == cores
    assert queue["sla"]["name"] == "Standard"


def test_unknown_queue_is_not_found(alice):
    assert alice.get("/api/v2/catalog/clusters/nope/").status_code == 404
