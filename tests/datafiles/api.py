"""What the file index tests share: the endpoints, epiccore's field names and list helpers."""

from __future__ import annotations

from datetime import datetime

from epic.data.paths import user_prefix
from epic.data.services import object_store

FILE_URL = "/api/v2/data/file/"
FOLDER_URL = "/api/v2/data/folder/"
# Field names of epiccore's File, FileDetails, Folder and FolderDetails models, in their order.
FILE_FIELDS = ["id", "created", "modified", "name", "obj_key", "size", "last_modified", "folder"]
FILE_DETAIL_FIELDS = ["id", "meta_data", *FILE_FIELDS[1:]]
FOLDER_FIELDS = ["id", "created", "modified", "name", "obj_key", "last_modified"]
FOLDER_DETAIL_FIELDS = ["id", "folder_size", *FOLDER_FIELDS[1:]]


def listed(client, url: str, **filters: str) -> list[dict]:
    """The results of one list request, which must succeed."""
    response = client.get(url, {"limit": 1000, **filters})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def ids_by_key(client, url: str) -> dict[str, int]:
    """The ids a list shows, by obj_key."""
    return {row["obj_key"]: row["id"] for row in listed(client, url)}


def stored_time(user, key: str) -> datetime:
    """The last_modified the store reports for one of the user's objects."""
    return object_store().head(user_prefix(user) + key).last_modified


def parsed(value: str) -> datetime:
    """An API timestamp as an aware datetime."""
    return datetime.fromisoformat(value)
