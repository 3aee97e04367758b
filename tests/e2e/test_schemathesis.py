"""Schemathesis against the product's own OpenAPI document on a live server."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
SECONDS = "60"


def test_no_server_errors_and_answers_match_the_schema(server):
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{server.api_url}/schema/",
            "--header",
            f"Authorization: Bearer {server.token}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-time",
            SECONDS,
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
