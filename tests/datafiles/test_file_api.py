"""The file endpoints: shapes, filters, stable ids and what the store really holds."""

from __future__ import annotations

import io

import pytest
from django.db import connection

from epic.data.paths import user_prefix
from epic.data.services import object_store
from tests.datafiles.api import (
    FILE_DETAIL_FIELDS,
    FILE_FIELDS,
    FILE_URL,
    FOLDER_URL,
    ids_by_key,
    listed,
    parsed,
    stored_time,
)


def test_list_shows_file_in_epiccore_shape_when_uploaded(alice, upload) -> None:
    upload(alice.user, "cavity/system/controlDict", "application simpleFoam;")
    prefix = user_prefix(alice.user)

    answer = alice.get(FILE_URL).json()

    folders = ids_by_key(alice, FOLDER_URL)
    (row,) = answer["results"]
    assert [answer["count"], answer["next"], answer["previous"]] == [1, None, None]
    assert list(row) == FILE_FIELDS
    assert row["name"] == "controlDict"
    assert row["obj_key"] == prefix + "cavity/system/controlDict"
    assert row["size"] == 23
    assert row["folder"] == folders[prefix + "cavity/system/"]
    assert parsed(row["last_modified"]) == stored_time(alice.user, "cavity/system/controlDict")
    assert parsed(row["created"]) <= parsed(row["modified"])


def test_read_shows_file_details_in_epiccore_shape_when_uploaded(alice, upload) -> None:
    upload(alice.user, "run.sh", "#!/bin/sh\n")
    (listed_row,) = listed(alice, FILE_URL)

    row = alice.get(f"{FILE_URL}{listed_row['id']}/").json()

    assert list(row) == FILE_DETAIL_FIELDS
    assert row["meta_data"] == {}
    assert row["folder"] is None
    assert {name: row[name] for name in FILE_FIELDS} == listed_row


def test_read_shows_metadata_when_uploaded_through_s3(alice, s3_session) -> None:
    s3, prefix = s3_session(alice)
    s3.put_object(
        Bucket="epic",
        Key=prefix + "cavity/0/U",
        Body=b"internalField uniform (0 0 0);",
        Metadata={"Source": "pyepic", "User-Profile": "7"},
    )
    (listed_row,) = listed(alice, FILE_URL)

    row = alice.get(f"{FILE_URL}{listed_row['id']}/").json()

    assert row["meta_data"] == {"source": "pyepic", "user-profile": "7"}
    assert row["obj_key"] == prefix + "cavity/0/U"
    assert row["size"] == 30


def test_ids_stay_stable_when_other_files_come_and_go(alice, upload, remove) -> None:
    upload(alice.user, "a/one", "1")
    upload(alice.user, "a/two", "2")
    before = ids_by_key(alice, FILE_URL)

    remove(alice.user, "a/one")
    upload(alice.user, "a/three", "3")
    after = ids_by_key(alice, FILE_URL)

    prefix = user_prefix(alice.user)
    assert after[prefix + "a/two"] == before[prefix + "a/two"]
    assert after[prefix + "a/three"] not in before.values()
    assert sorted(after) == [prefix + "a/three", prefix + "a/two"]


def test_read_shows_new_content_and_keeps_id_when_file_overwritten(alice, upload) -> None:
    upload(alice.user, "log.txt", "short")
    (before,) = listed(alice, FILE_URL)

    upload(alice.user, "log.txt", "a much longer log")
    after = alice.get(f"{FILE_URL}{before['id']}/").json()

    assert after["id"] == before["id"]
    assert after["size"] == 17
    assert parsed(after["last_modified"]) == stored_time(alice.user, "log.txt")
    assert after["created"] == before["created"]
    assert parsed(after["modified"]) >= parsed(before["modified"])


def test_read_is_not_found_when_file_deleted(alice, upload, remove) -> None:
    upload(alice.user, "gone.txt", "x")
    (row,) = listed(alice, FILE_URL)

    remove(alice.user, "gone.txt")

    assert alice.get(f"{FILE_URL}{row['id']}/").status_code == 404
    assert listed(alice, FILE_URL) == []


def test_list_leaves_out_folder_markers_when_folders_are_empty(alice) -> None:
    object_store().put_stream(user_prefix(alice.user) + "empty/", io.BytesIO(b""))

    assert listed(alice, FILE_URL) == []


def test_list_shows_files_written_by_jobs_when_put_directly(alice, tmp_path) -> None:
    result = tmp_path / "p"
    result.write_text("0.5")
    object_store().put_file(user_prefix(alice.user) + "job-1/postProcessing/p", result)

    assert [row["name"] for row in listed(alice, FILE_URL)] == ["p"]


def test_name_filter_lists_files_whose_name_contains_it(alice, upload) -> None:
    for key in ("cavity/system/controlDict", "cavity/system/fvSchemes", "control/readme"):
        upload(alice.user, key, "x")

    names = [row["name"] for row in listed(alice, FILE_URL, name="control")]

    assert names == ["controlDict"]


def test_path_filter_lists_files_directly_in_folder(alice, upload) -> None:
    for key in ("cavity/system/controlDict", "cavity/system/fvSchemes", "cavity/0/U", "top"):
        upload(alice.user, key, "x")

    in_system = listed(alice, FILE_URL, path="epic://cavity/system/")
    in_cavity = listed(alice, FILE_URL, path="epic://cavity")
    at_top = listed(alice, FILE_URL, path="epic://")

    assert [row["name"] for row in in_system] == ["controlDict", "fvSchemes"]
    assert in_cavity == []
    assert [row["name"] for row in at_top] == ["top"]


def test_path_filter_lists_nothing_when_folder_missing(alice, upload) -> None:
    upload(alice.user, "cavity/system/controlDict", "x")

    assert listed(alice, FILE_URL, path="epic://elsewhere/") == []


def test_filters_combine_when_both_given(alice, upload) -> None:
    for key in ("a/mesh.log", "a/solve.log", "b/mesh.log"):
        upload(alice.user, key, "x")

    rows = listed(alice, FILE_URL, path="epic://a/", name="mesh")

    assert [row["obj_key"] for row in rows] == [user_prefix(alice.user) + "a/mesh.log"]


def test_list_pages_with_limit_and_offset_when_many_files(alice, upload) -> None:
    for number in range(5):
        upload(alice.user, f"f{number}", "x")

    answer = alice.get(FILE_URL, {"limit": 2, "offset": 2}).json()

    assert answer["count"] == 5
    assert [row["name"] for row in answer["results"]] == ["f2", "f3"]
    assert answer["next"].endswith(f"{FILE_URL}?limit=2&offset=4")
    assert answer["previous"].endswith(f"{FILE_URL}?limit=2")


@pytest.mark.parametrize("count", [2, 40])
def test_list_queries_stay_bounded_when_files_multiply(
    alice, upload, django_assert_max_num_queries, count
) -> None:
    for number in range(count):
        upload(alice.user, f"case-{number % 4}/out/field-{number}", "x" * number)
    connection.ensure_connection()

    # The first list indexes every file; the second finds nothing to change.
    with django_assert_max_num_queries(16):
        first = alice.get(FILE_URL, {"limit": 1000})
    with django_assert_max_num_queries(10):
        second = alice.get(FILE_URL, {"limit": 1000})

    assert first.json()["count"] == second.json()["count"] == count
