"""The folder endpoints: shapes, sizes, filters and folders coming and going with their files."""

from __future__ import annotations

import io

import pytest
from django.db import connection

from epic.data.paths import user_prefix
from epic.data.services import object_store
from tests.datafiles.api import (
    FOLDER_DETAIL_FIELDS,
    FOLDER_FIELDS,
    FOLDER_URL,
    ids_by_key,
    listed,
    parsed,
    stored_time,
)


@pytest.fixture
def cavity(alice, upload) -> dict[str, int]:
    """An OpenFOAM case of alice's, 3 + 5 + 7 bytes; answer the folder ids by relative key."""
    upload(alice.user, "cavity/system/controlDict", "abc")
    upload(alice.user, "cavity/system/fvSchemes", "abcde")
    upload(alice.user, "cavity/0/U", "abcdefg")
    prefix = user_prefix(alice.user)
    return {key[len(prefix) :]: row_id for key, row_id in ids_by_key(alice, FOLDER_URL).items()}


def test_list_shows_every_folder_in_epiccore_shape_when_files_nest(alice, cavity) -> None:
    rows = listed(alice, FOLDER_URL)

    prefix = user_prefix(alice.user)
    assert [list(row) for row in rows] == [FOLDER_FIELDS] * 3
    assert [row["obj_key"] for row in rows] == [
        prefix + "cavity/",
        prefix + "cavity/0/",
        prefix + "cavity/system/",
    ]
    assert [row["name"] for row in rows] == ["cavity", "0", "system"]


def test_read_shows_folder_details_in_epiccore_shape(alice, cavity) -> None:
    row = alice.get(f"{FOLDER_URL}{cavity['cavity/system/']}/").json()

    assert list(row) == FOLDER_DETAIL_FIELDS
    assert row["id"] == cavity["cavity/system/"]
    assert row["name"] == "system"
    assert row["obj_key"] == user_prefix(alice.user) + "cavity/system/"
    assert row["folder_size"] == "8"
    assert parsed(row["last_modified"]) == stored_time(alice.user, "cavity/system/fvSchemes")


def test_folder_size_sums_every_file_under_it_when_folders_nest(alice, cavity) -> None:
    sizes = {
        key: alice.get(f"{FOLDER_URL}{row_id}/").json()["folder_size"]
        for key, row_id in cavity.items()
    }

    assert sizes == {"cavity/": "15", "cavity/system/": "8", "cavity/0/": "7"}


def test_folder_size_follows_store_when_files_change(alice, cavity, upload, remove) -> None:
    upload(alice.user, "cavity/system/controlDict", "abcdefghij")
    remove(alice.user, "cavity/0/U")

    row = alice.get(f"{FOLDER_URL}{cavity['cavity/']}/").json()

    assert row["folder_size"] == "15"
    assert row["id"] == cavity["cavity/"]
    assert sorted(ids_by_key(alice, FOLDER_URL).values()) == sorted(
        [cavity["cavity/"], cavity["cavity/system/"]]
    )


def test_read_is_not_found_when_last_file_of_folder_deleted(alice, cavity, remove) -> None:
    remove(alice.user, "cavity/0/U")

    assert alice.get(f"{FOLDER_URL}{cavity['cavity/0/']}/").status_code == 404


def test_marker_shows_empty_folder_with_size_zero_when_created(alice) -> None:
    object_store().put_stream(user_prefix(alice.user) + "results/", io.BytesIO(b""))

    (row,) = listed(alice, FOLDER_URL)
    details = alice.get(f"{FOLDER_URL}{row['id']}/").json()

    assert row["name"] == "results"
    assert details["folder_size"] == "0"
    assert parsed(details["last_modified"]) == stored_time(alice.user, "results/")


def test_file_list_names_folder_by_its_id(alice, cavity) -> None:
    rows = listed(alice, "/api/v2/data/file/", path="epic://cavity/0/")

    assert [row["folder"] for row in rows] == [cavity["cavity/0/"]]


def test_name_filter_lists_folders_whose_name_contains_it(alice, cavity) -> None:
    assert [row["name"] for row in listed(alice, FOLDER_URL, name="SYST")] == ["system"]


def test_path_filter_lists_folders_directly_in_folder(alice, cavity) -> None:
    in_cavity = listed(alice, FOLDER_URL, path="epic://cavity/")
    at_top = listed(alice, FOLDER_URL, path="epic://")

    assert [row["name"] for row in in_cavity] == ["0", "system"]
    assert [row["name"] for row in at_top] == ["cavity"]


@pytest.mark.parametrize("count", [2, 40])
def test_list_queries_stay_bounded_when_folders_multiply(
    alice, upload, django_assert_max_num_queries, count
) -> None:
    for number in range(count):
        upload(alice.user, f"case-{number}/system/controlDict", "x" * number)
    connection.ensure_connection()

    # The first list indexes every folder; the second finds nothing to change.
    with django_assert_max_num_queries(16):
        first = alice.get(FOLDER_URL, {"limit": 1000})
    with django_assert_max_num_queries(10):
        second = alice.get(FOLDER_URL, {"limit": 1000})

    assert first.json()["count"] == second.json()["count"] == 2 * count
