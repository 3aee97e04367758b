"""The `epic admin` commands act on the same state a server would use."""

import socket
import subprocess

import pytest

from tests.e2e.servers import EPIC, epic_command, reachable_home, server_env


def run_epic(home, *args) -> subprocess.CompletedProcess:
    """Run `epic` and return the finished process, whatever its exit code."""
    return subprocess.run(
        [str(EPIC), *args], env=server_env(home), capture_output=True, text=True, check=False
    )


@pytest.fixture
def home(tmp_path):
    """A fresh EPIC_HOME."""
    return tmp_path / "home"


def test_token_create_prints_only_a_new_token(home):
    epic_command(home, "admin", "user", "create", "alice", "--team", "acme", "--role", "owner")

    first = epic_command(home, "admin", "token", "create", "alice")
    second = epic_command(home, "admin", "token", "create", "alice")

    assert first.count("\n") == 1
    assert first.startswith("epic_")
    assert first != second


def test_duplicate_user_is_refused(home):
    epic_command(home, "admin", "user", "create", "alice", "--team", "acme")

    result = run_epic(home, "admin", "user", "create", "alice", "--team", "other")

    assert result.returncode == 1
    assert "exists already" in result.stderr


def test_token_for_unknown_user_is_refused(home):
    result = run_epic(home, "admin", "token", "create", "nobody")

    assert result.returncode == 1
    assert result.stdout == ""


def test_bad_role_is_refused_by_the_command_line(home):
    result = run_epic(home, "admin", "user", "create", "eve", "--team", "t", "--role", "king")

    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_catalog_load_reports_and_is_idempotent(home, tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text("clusters: [{name: extra, backend: local}]\n")

    first = epic_command(home, "admin", "catalog", "load", str(path))
    second = epic_command(home, "admin", "catalog", "load", str(path))

    assert first == second == "1 clusters, 0 queues, 0 applications, 0 desktop_node_types\n"


def test_catalog_load_of_a_bad_file_fails_with_the_reason(home, tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text("queues: [{queue_code: q, cluster: nope, max_allocation: 1}]\n")

    result = run_epic(home, "admin", "catalog", "load", str(path))

    assert result.returncode == 1
    assert "no cluster named nope" in result.stderr


def test_user_join_adds_a_team_or_changes_the_role_in_it(home):
    epic_command(home, "admin", "user", "create", "alice", "--team", "acme")
    join = ("admin", "user", "join", "alice", "--team", "beta", "--role")

    printed = epic_command(home, *join, "admin")
    kept = epic_command(home, *join[:-1])
    changed = epic_command(home, *join, "user")

    assert printed.startswith("alice is a member of team beta (id ")
    assert printed.strip().endswith(" as admin")
    assert kept.strip().endswith(" as admin")
    assert changed.strip().endswith(" as user")


def test_user_join_refuses_an_unknown_user(home):
    result = run_epic(home, "admin", "user", "join", "nobody", "--team", "beta")

    assert result.returncode == 1
    assert result.stderr.endswith("epic: no user named nobody\n")


def test_serve_on_a_taken_port_says_so_and_exits():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    home = reachable_home()

    with taken:
        result = subprocess.run(
            [str(EPIC), "serve", "--port", str(port), "--s3-port", "0"],
            env=server_env(home),
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert result.returncode == 1
    assert "epic serve: cannot listen on 127.0.0.1: " in result.stderr
    assert "Address already in use" in result.stderr
