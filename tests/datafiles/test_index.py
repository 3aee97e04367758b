"""The file index service: reconciling rows with the store without churning ids."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from epic.data import files
from epic.data.files import enclosing_folders, leaf_name, parent_key, sync_index
from epic.data.models import DataFile, DataFolder, DataIndex


def test_enclosing_folders_lists_each_level_when_key_nests() -> None:
    assert list(enclosing_folders("user-1/a/b/c.txt", "user-1/")) == ["user-1/a/", "user-1/a/b/"]
    assert list(enclosing_folders("user-1/a/b/", "user-1/")) == ["user-1/a/", "user-1/a/b/"]
    assert list(enclosing_folders("user-1/top", "user-1/")) == []


def test_parent_key_and_leaf_name_split_files_and_folders() -> None:
    assert (parent_key("user-1/a/b.txt"), leaf_name("user-1/a/b.txt")) == ("user-1/a/", "b.txt")
    assert (parent_key("user-1/a/b/"), leaf_name("user-1/a/b/")) == ("user-1/a/", "b")


def test_sync_indexes_nothing_when_user_has_no_data(alice) -> None:
    sync_index(alice.user)

    assert DataFile.objects.count() == DataFolder.objects.count() == 0
    assert DataIndex.objects.get(user=alice.user).walked_at is not None


def test_sync_leaves_rows_untouched_when_store_unchanged(alice, upload) -> None:
    upload(alice.user, "a/b/c.txt", "abc")
    sync_index(alice.user)
    before = list(DataFile.objects.values()) + list(DataFolder.objects.values())

    sync_index(alice.user)

    assert list(DataFile.objects.values()) + list(DataFolder.objects.values()) == before


def test_sync_applies_nothing_when_newer_walk_already_applied(alice, upload) -> None:
    DataIndex.objects.create(user=alice.user, walked_at=timezone.now() + timedelta(hours=1))
    upload(alice.user, "late.txt", "x")

    sync_index(alice.user)

    assert DataFile.objects.count() == 0


def test_sync_deletes_every_vanished_row_when_deletions_span_batches(
    alice, upload, remove, monkeypatch
) -> None:
    monkeypatch.setattr(files, "DELETE_BATCH", 2)
    keys = [f"top-{number}" for number in range(5)] + [f"d{number}/f" for number in range(5)]
    for key in keys:
        upload(alice.user, key, "x")
    sync_index(alice.user)

    for key in keys[1:]:
        remove(alice.user, key)
    sync_index(alice.user)

    assert list(DataFile.objects.values_list("name", flat=True)) == ["top-0"]
    assert DataFolder.objects.count() == 0
