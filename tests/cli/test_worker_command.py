"""`epic worker` refuses to start where it could not do its work, and says why."""

import os
import signal
import subprocess
import time

from tests.e2e.servers import EPIC, epic_command, server_env

SLURM_CATALOG = """
clusters:
  - {name: hpc, backend: slurm}
queues:
  - {queue_code: hpc, cluster: hpc, partition: compute, max_allocation: 4, cores_per_cpu: 2}
"""


def test_worker_for_a_slurm_cluster_needs_the_api_url(tmp_path):
    home = tmp_path / "home"
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(SLURM_CATALOG)
    epic_command(home, "admin", "catalog", "load", str(catalog))
    env = {key: value for key, value in server_env(home).items() if key != "EPIC_API_URL"}

    result = subprocess.run(
        [str(EPIC), "worker", "--name", "w1"], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1
    assert "EPIC_API_URL is not set" in result.stderr


def test_worker_names_its_database_and_warns_about_sqlite(tmp_path):
    home = tmp_path / "home"
    worker = subprocess.Popen(
        [str(EPIC), "worker", "--name", "w1"],
        env={**server_env(home), "EPIC_API_URL": "http://127.0.0.1:9"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = worker.stdout.readline()
    finally:
        os.kill(worker.pid, signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)

    assert first_line.startswith("EPIC worker 'w1' on SQLite ")
    assert str(home) in first_line
    assert "warning: the database is SQLite" in stderr


def test_a_live_worker_keeps_its_name_and_a_killed_one_gives_it_up(tmp_path):
    home = tmp_path / "home"
    env = {**server_env(home), "EPIC_API_URL": "http://127.0.0.1:9"}
    first = subprocess.Popen(
        [str(EPIC), "worker", "--name", "w1"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        first.stdout.readline()
        second = subprocess.run(
            [str(EPIC), "worker", "--name", "w1"], env=env, capture_output=True, text=True
        )
    finally:
        os.kill(first.pid, signal.SIGKILL)
    # Not reaped yet: the killed worker lingers as a zombie, which counts as gone.
    time.sleep(0.5)
    restarted = subprocess.Popen(
        [str(EPIC), "worker", "--name", "w1"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        started = restarted.stdout.readline()
    finally:
        os.kill(restarted.pid, signal.SIGTERM)
        restarted.wait(timeout=60)
        first.wait()

    assert second.returncode == 1
    assert "A worker named 'w1' already runs" in second.stderr
    assert started.startswith("EPIC worker 'w1'")
