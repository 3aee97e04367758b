"""The catalog a fresh installation starts with, measured from this machine."""

import logging
import os
import shutil
from pathlib import Path

from epic.catalog.loader import apply_catalog
from epic.catalog.models import Queue

logger = logging.getLogger(__name__)

LOCAL_CLUSTER = "local"
LOCAL_QUEUE = "local"


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
    """The default catalog document: one queue for this machine, OpenFOAM where installed."""
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
                # An example price, to be changed by the operator.
                "core_hour_price": "0.05",
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
    return document


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
