"""The catalog a fresh installation starts with, measured from this machine and its Slurm."""

import logging
import os
import shutil
from pathlib import Path

from epic.catalog.loader import apply_catalog
from epic.catalog.models import Queue
from epic.compute.slurm.commands import (
    Partition,
    SlurmError,
    SlurmUnavailable,
    partitions,
    run_command,
)

logger = logging.getLogger(__name__)

LOCAL_CLUSTER = "local"
LOCAL_QUEUE = "local"
SLURM_CLUSTER = "slurm"
# The runtime limit of a queue on a Slurm partition without one, in hours.
UNLIMITED_PARTITION_HOURS = 24
# An example price, to be changed by the operator.
EXAMPLE_CORE_HOUR_PRICE = "0.05"


def machine_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0))


def machine_memory() -> str:
    """This machine's memory, as a human-readable string in GiB."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{total / 2**30:.1f} GiB"


def machine_cpu_model() -> str:
    """The CPU model this machine reports, or "unknown"."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()[:100] or "unknown"
    return "unknown"


def default_catalog() -> dict:
    """The default catalog: a queue for this machine and one per Slurm partition, and apps.

    Script runs on every queue, and OpenFOAM too where it is installed.
    """
    cores = machine_cores()
    document = {
        "clusters": [{"name": LOCAL_CLUSTER, "backend": "local", "description": "This machine."}],
        "queues": [
            {
                "queue_code": LOCAL_QUEUE,
                "name": "This machine",
                "cluster": LOCAL_CLUSTER,
                "description": "Runs job steps as processes on the server's own machine.",
                "max_runtime": 24,
                "max_allocation": cores,
                "cpus": 1,
                "cores_per_cpu": cores,
                "threads_per_core": 1,
                "memory": machine_memory(),
                "cpu_generation": machine_cpu_model(),
                "core_hour_price": EXAMPLE_CORE_HOUR_PRICE,
            }
        ],
        "applications": [
            {
                "product_name": "Script",
                "description": "Runs a bash script from the job's input folder.",
                "versions": [
                    {
                        "app_code": "script",
                        "version": "1",
                        "driver": "script",
                        "queues": [LOCAL_QUEUE],
                    },
                ],
            }
        ],
    }
    if shutil.which("icoFoam") and os.path.isdir("/usr/share/openfoam"):
        document["applications"].append(_openfoam_entry())
    _add_slurm_partitions(document, slurm_partitions())
    return document


def slurm_partitions() -> list[Partition]:
    """The partitions of the Slurm cluster this machine's Slurm client reaches, if one answers."""
    if shutil.which("sinfo") is None:
        return []
    try:
        return partitions(run_command)
    except (SlurmUnavailable, SlurmError) as error:
        logger.info("No Slurm queues in the default catalog: %s", error)
        return []


def _add_slurm_partitions(document: dict, found: list[Partition]) -> None:
    """Add a Slurm cluster with one queue per partition, and every application on them."""
    if not found:
        return
    document["clusters"].append(
        {"name": SLURM_CLUSTER, "backend": "slurm", "description": "The Slurm cluster."}
    )
    document["queues"] += [_slurm_queue(partition) for partition in found]
    for application in document["applications"]:
        for version in application["versions"]:
            version["queues"] += [f"slurm-{partition.name}" for partition in found]
    logger.info("Found Slurm partitions: %s", ", ".join(item.name for item in found))


def _slurm_queue(partition: Partition) -> dict:
    """The queue of a Slurm partition, shaped like its smallest node."""
    cores_per_node = max(1, partition.sockets * partition.cores_per_socket)
    hours = UNLIMITED_PARTITION_HOURS
    if partition.time_limit_minutes is not None:
        hours = max(1, partition.time_limit_minutes // 60)
    return {
        "queue_code": f"slurm-{partition.name}",
        "name": f"Slurm partition {partition.name}",
        "cluster": SLURM_CLUSTER,
        "partition": partition.name,
        "description": f"Runs job steps as Slurm batch jobs in partition {partition.name}.",
        "max_runtime": hours,
        "max_allocation": cores_per_node * max(1, partition.nodes),
        "cpus": max(1, partition.sockets),
        "cores_per_cpu": max(1, partition.cores_per_socket),
        "threads_per_core": max(1, partition.threads_per_core),
        "memory": f"{partition.memory_mb / 1024:.1f} GiB",
        "node_count": max(1, partition.nodes),
        "maintenance_mode": not partition.available,
        "core_hour_price": EXAMPLE_CORE_HOUR_PRICE,
    }


def _openfoam_entry() -> dict:
    """The catalog entry of Debian's OpenFOAM."""
    return {
        "product_name": "OpenFOAM",
        "description": "OpenFOAM, the open source CFD toolbox (Debian's packaged release).",
        "versions": [
            {
                "app_code": "openfoam-1912",
                "version": "1912",
                "driver": "openfoam",
                "queues": [LOCAL_QUEUE],
                "environment": {"WM_PROJECT_DIR": "/usr/share/openfoam"},
            }
        ],
    }


def ensure_default_catalog() -> bool:
    """Load the default catalog on first start (when no queue exists); return whether it did."""
    if Queue.objects.exists():
        return False
    apply_catalog(default_catalog())
    logger.info("Created the default catalog for this machine (%d cores)", machine_cores())
    return True
