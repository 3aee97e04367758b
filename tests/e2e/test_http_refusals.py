"""What the web server itself refuses, before the API sees a request, answers in DRF's shape."""

import http.client
import json
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.e2e


def ask(api_url: str, path: str, headers: dict[str, str]) -> tuple[int, str, dict]:
    """One GET on the server; its status, content type and decoded JSON body."""
    address = urlsplit(api_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Type"), json.loads(answer.read())
    finally:
        connection.close()


def test_oversized_headers_and_uri_are_refused_in_drfs_shape(server):
    token = {"Authorization": f"Bearer {server.token}"}

    headers = ask(server.api_url, "/api/v2/job/", {**token, "X-Padding": "x" * 100_000})
    uri = ask(server.api_url, "/api/v2/job/?q=" + "x" * 100_000, token)

    assert headers == (
        413,
        "application/json",
        {"detail": "Request Entity Too Large.", "code": "request_entity_too_large"},
    )
    assert uri[:2] == (414, "application/json")
    assert uri[2]["code"] == "request_uri_too_long"


def test_a_normal_request_is_still_answered_by_the_api(server):
    status, content_type, body = ask(
        server.api_url, "/api/v2/job/", {"Authorization": f"Bearer {server.token}"}
    )

    assert (status, content_type) == (200, "application/json")
    assert body["count"] == 0
