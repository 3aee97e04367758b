"""Each user sees only their own files and folders, and bad filters are refused by name."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from epic.data.paths import user_prefix
from tests.conftest import client_for
from tests.datafiles.api import FILE_URL, FOLDER_URL, ids_by_key, listed


@pytest.fixture
def alice_case(alice, upload) -> dict[str, int]:
    """One file of alice's in one folder; answer their ids by endpoint."""
    upload(alice.user, "cavity/system/controlDict", "abc")
    prefix = user_prefix(alice.user)
    return {
        FILE_URL: ids_by_key(alice, FILE_URL)[prefix + "cavity/system/controlDict"],
        FOLDER_URL: ids_by_key(alice, FOLDER_URL)[prefix + "cavity/"],
    }


@pytest.mark.parametrize("url", [FILE_URL, FOLDER_URL])
def test_list_leaves_out_other_users_rows_when_both_have_data(
    alice_case, bob, upload, url
) -> None:
    upload(bob.user, "cavity/system/controlDict", "bob's")

    rows = listed(bob, url)

    assert rows
    assert all(row["obj_key"].startswith(user_prefix(bob.user)) for row in rows)
    assert alice_case[url] not in [row["id"] for row in rows]


@pytest.mark.parametrize("url", [FILE_URL, FOLDER_URL])
def test_read_is_not_found_when_row_belongs_to_another_user(alice_case, bob, url) -> None:
    response = bob.get(f"{url}{alice_case[url]}/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


@pytest.mark.parametrize("url", [FILE_URL, FOLDER_URL])
def test_read_is_not_found_when_owner_is_in_same_team(alice_case, url) -> None:
    carol = client_for("carol", "acme")

    assert carol.get(f"{url}{alice_case[url]}/").status_code == 404
    assert listed(carol, url, path="epic://cavity/") == []


@pytest.mark.parametrize("url", [FILE_URL, FOLDER_URL])
def test_read_is_not_found_when_id_is_not_a_number(alice, url) -> None:
    assert alice.get(f"{url}abc/").status_code == 404


@pytest.mark.parametrize("url", [FILE_URL, FOLDER_URL])
def test_list_is_refused_when_unauthenticated(db, url) -> None:
    assert APIClient().get(url).status_code == 401


@pytest.mark.parametrize("url", [FILE_URL, FOLDER_URL])
@pytest.mark.parametrize(
    "path",
    [
        "cavity/system/",
        "s3://epic/cavity/",
        "epic://../user-2/",
        "epic://a/../../b",
        "epic://a\x00",
    ],
)
def test_list_is_refused_naming_path_when_path_is_bad(alice, url, path) -> None:
    response = alice.get(url, {"path": path})

    assert response.status_code == 400
    assert list(response.json()) == ["path"]
    assert len(response.json()["path"]) == 1


@pytest.mark.parametrize("url", [FILE_URL, FOLDER_URL])
@pytest.mark.parametrize("name", ["control\x00Dict", "n" * 256])
def test_list_is_refused_naming_name_when_name_is_bad(alice, url, name) -> None:
    response = alice.get(url, {"name": name})

    assert response.status_code == 400
    assert list(response.json()) == ["name"]


def test_list_explains_refusal_when_path_climbs_out(alice) -> None:
    response = alice.get(FILE_URL, {"path": "epic://cavity/../../user-1/"})

    assert response.json() == {"path": ["A data path may not contain `.` or `..` segments."]}
