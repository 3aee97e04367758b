"""The file index: stable integer ids for what each user's data store prefix really holds.

The store has no ids, and objects appear and vanish through the S3 endpoint and through jobs,
so the index is reconciled with a walk of the user's prefix before each list or read.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from epic.data.models import DataFile, DataFolder, DataIndex
from epic.data.paths import user_prefix
from epic.data.services import object_store
from epic.data.store import ObjectInfo

logger = logging.getLogger(__name__)

# Rows deleted per statement, well below every database's limit on query parameters.
DELETE_BATCH = 500
FILE_FIELDS = ["size", "last_modified", "etag", "metadata", "folder", "modified"]
FOLDER_FIELDS = ["size", "last_modified", "modified"]


@dataclass
class FolderSummary:
    """What one walk found under a folder: its total bytes and its latest change."""

    size: int = 0
    last_modified: datetime | None = None

    def add(self, info: ObjectInfo) -> None:
        """Count an object found under the folder (or the folder's own marker)."""
        self.size += info.size
        if self.last_modified is None or info.last_modified > self.last_modified:
            self.last_modified = info.last_modified


@dataclass
class Snapshot:
    """The files and folders one walk found under a user's prefix, by full store key."""

    files: dict[str, ObjectInfo] = field(default_factory=dict)
    folders: dict[str, FolderSummary] = field(default_factory=dict)


def parent_key(key: str) -> str:
    """The key of the folder holding a file or folder key: everything up to its last "/"."""
    return key[: key.rstrip("/").rfind("/") + 1]


def leaf_name(key: str) -> str:
    """The last segment of a file or folder key."""
    return key.rstrip("/").rsplit("/", 1)[-1]


def enclosing_folders(key: str, prefix: str) -> Iterator[str]:
    """Yield the folders below `prefix` that hold `key`; a folder marker holds itself."""
    position = key.find("/", len(prefix))
    while position != -1:
        yield key[: position + 1]
        position = key.find("/", position + 1)


def walk(user) -> Snapshot:
    """Read every object under the user's prefix and summarise the folders they make."""
    prefix = user_prefix(user)
    snapshot = Snapshot()
    for info in object_store().list(prefix):
        if info.key == prefix:
            continue
        if not info.key.endswith("/"):
            snapshot.files[info.key] = info
        for folder in enclosing_folders(info.key, prefix):
            snapshot.folders.setdefault(folder, FolderSummary()).add(info)
    return snapshot


def sync_index(user) -> None:
    """Bring the user's file and folder rows in line with a fresh walk of their prefix.

    Rows of unchanged keys are left alone and changed ones updated in place, so ids stay stable
    for as long as a key exists.

    Limitation: every call walks the whole prefix, reading one sidecar per object, and loads
    the user's rows, so its cost grows with the number of objects the user holds.
    """
    started = timezone.now()
    snapshot = walk(user)
    with transaction.atomic():
        index, _ = DataIndex.objects.select_for_update().get_or_create(user=user)
        if index.walked_at is not None and index.walked_at > started:
            # A walk that began later has been applied already; this one may be staler.
            return
        folder_ids = _apply_folders(user, snapshot.folders, started)
        _apply_files(user, snapshot.files, folder_ids, started)
        index.walked_at = started
        index.save(update_fields=["walked_at"])


def _apply_folders(user, found: dict[str, FolderSummary], now: datetime) -> dict[str, int]:
    """Insert, update and delete the user's folder rows to match a walk; return ids by key."""
    known = {folder.key: folder for folder in DataFolder.objects.filter(user=user)}
    # Deleting a folder deletes the rows of the files in it, which have vanished too.
    vanished = [row.pk for key, row in known.items() if key not in found]
    _delete_in_batches(DataFolder, vanished)

    new, changed = [], []
    for key, summary in found.items():
        row = known.get(key)
        if row is None:
            new.append(_new_folder(user, key, summary))
        elif (row.size, row.last_modified) != (summary.size, summary.last_modified):
            row.size, row.last_modified, row.modified = summary.size, summary.last_modified, now
            changed.append(row)

    # SQLite and PostgreSQL both set the ids of rows created in bulk.
    DataFolder.objects.bulk_create(new)
    DataFolder.objects.bulk_update(changed, FOLDER_FIELDS)
    _log_changes("folders", user, len(new), len(changed), len(vanished))
    ids = {key: row.pk for key, row in known.items() if key in found}
    return ids | {row.key: row.pk for row in new}


def _new_folder(user, key: str, summary: FolderSummary) -> DataFolder:
    """An unsaved folder row for a key the walk found."""
    return DataFolder(
        user=user,
        key=key,
        name=leaf_name(key),
        parent_key=parent_key(key),
        size=summary.size,
        last_modified=summary.last_modified,
    )


def _apply_files(
    user, found: dict[str, ObjectInfo], folder_ids: dict[str, int], now: datetime
) -> None:
    """Insert, update and delete the user's file rows to match a walk."""
    columns = ("id", "key", "size", "last_modified", "etag", "metadata", "folder_id")
    known = {row[1]: row for row in DataFile.objects.filter(user=user).values_list(*columns)}
    vanished = [row[0] for key, row in known.items() if key not in found]
    _delete_in_batches(DataFile, vanished)

    new, changed = [], []
    for key, info in found.items():
        folder_id = folder_ids.get(parent_key(key))
        row = known.get(key)
        if row is None:
            new.append(_file_row(user, info, folder_id))
        elif row[2:] != (info.size, info.last_modified, info.etag, info.metadata, folder_id):
            updated = _file_row(user, info, folder_id)
            updated.pk, updated.modified = row[0], now
            changed.append(updated)

    DataFile.objects.bulk_create(new)
    DataFile.objects.bulk_update(changed, FILE_FIELDS)
    _log_changes("files", user, len(new), len(changed), len(vanished))


def _file_row(user, info: ObjectInfo, folder_id: int | None) -> DataFile:
    """An unsaved file row describing an object the walk found."""
    return DataFile(
        user=user,
        key=info.key,
        name=leaf_name(info.key),
        folder_id=folder_id,
        size=info.size,
        last_modified=info.last_modified,
        etag=info.etag,
        metadata=dict(info.metadata),
    )


def _delete_in_batches(model, ids: list[int]) -> None:
    """Delete rows by id, a bounded number per statement."""
    for start in range(0, len(ids), DELETE_BATCH):
        model.objects.filter(pk__in=ids[start : start + DELETE_BATCH]).delete()


def _log_changes(kind: str, user, new: int, changed: int, deleted: int) -> None:
    """Note what a sync changed in the index, if anything."""
    if new or changed or deleted:
        logger.debug(
            "indexed %s of user %s: %d new, %d changed, %d deleted",
            kind,
            user.pk,
            new,
            changed,
            deleted,
        )
