"""Specification of LocalObjectStore: keys, atomic writes, listings, folders and multipart."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from epic.data import store as store_module
from epic.data.store import (
    DigestMismatch,
    InvalidKey,
    InvalidPart,
    InvalidPartOrder,
    KeyConflict,
    LengthMismatch,
    LocalObjectStore,
    NoSuchUpload,
    validate_key,
)

from .conftest import md5_hex

MIB = 1024 * 1024


class BrokenStream(io.RawIOBase):
    """A stream that yields some bytes and then fails, like a client hanging up mid-upload."""

    def __init__(self, good_bytes: int) -> None:
        self.remaining = good_bytes

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            raise ConnectionResetError("client went away")
        chunk = b"x" * min(size if size > 0 else self.remaining, self.remaining)
        self.remaining -= len(chunk)
        return chunk


def put(store: LocalObjectStore, key: str, data: bytes = b"data", **options) -> None:
    """Store bytes under a key."""
    store.put_stream(key, io.BytesIO(data), **options)


def staging_files(store: LocalObjectStore) -> list[Path]:
    """Return whatever is left in the store's staging folder."""
    return list((store.root / ".tmp").iterdir())


def listed_keys(store: LocalObjectStore, prefix: str = "", start_after: str = "") -> list[str]:
    """Return the keys a listing yields, in order."""
    return [info.key for info in store.list(prefix, start_after)]


@pytest.mark.parametrize(
    "key",
    ["", "/a", "a/../b", "..", "a/./b", "a//b", "a\\b", "a\x00b", "x" * 1025, "é" * 513],
)
def test_validate_key_refuses_unsafe_keys(key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)


@pytest.mark.parametrize(
    "key", ["a", "user-3/case/0/U", "folder/", "a b+c/é.txt", "...", "x" * 255]
)
def test_validate_key_accepts_clean_keys(key: str) -> None:
    assert validate_key(key) == key


def test_put_stream_round_trip_keeps_bytes_metadata_and_md5_etag(store: LocalObjectStore) -> None:
    info = store.put_stream("user-3/a.txt", io.BytesIO(b"hello"), metadata={"colour": "blue"})

    assert info.size == 5
    assert info.etag == md5_hex(b"hello")
    assert info.metadata == {"colour": "blue"}
    assert info.last_modified.utcoffset().total_seconds() == 0
    assert store.head("user-3/a.txt") == info
    with store.open("user-3/a.txt") as stream:
        assert stream.read() == b"hello"
    assert store.path("user-3/a.txt") == store.root / "objects" / "user-3" / "a.txt"


def test_head_returns_none_when_missing(store: LocalObjectStore) -> None:
    assert store.head("missing") is None
    with pytest.raises(KeyError):
        store.open("missing")
    with pytest.raises(KeyError):
        store.path("missing")


def test_put_stream_refuses_wrong_sha256_and_leaves_nothing(store: LocalObjectStore) -> None:
    with pytest.raises(DigestMismatch):
        put(store, "a", b"hello", expected_sha256=hashlib.sha256(b"other").hexdigest())

    assert store.head("a") is None
    assert staging_files(store) == []


def test_put_stream_accepts_matching_sha256(store: LocalObjectStore) -> None:
    put(store, "a", b"hello", expected_sha256=hashlib.sha256(b"hello").hexdigest())

    assert store.head("a").size == 5


def test_put_stream_short_of_length_raises_and_leaves_nothing(store: LocalObjectStore) -> None:
    with pytest.raises(LengthMismatch):
        put(store, "a", b"hello", length=6)

    assert store.head("a") is None
    assert staging_files(store) == []


def test_put_stream_interrupted_mid_stream_leaves_nothing(store: LocalObjectStore) -> None:
    put(store, "a", b"old")

    with pytest.raises(ConnectionResetError):
        store.put_stream("a", BrokenStream(3 * MIB))

    with store.open("a") as stream:
        assert stream.read() == b"old"
    assert staging_files(store) == []


def test_put_file_copies_a_local_file(store: LocalObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "result.dat"
    source.write_bytes(b"\x00" * 3 * MIB)

    info = store.put_file("user-3/out/result.dat", source, metadata={"job": "7"})

    assert info.size == 3 * MIB
    assert store.path("user-3/out/result.dat").read_bytes() == source.read_bytes()


def test_put_file_without_overwrite_refuses_existing_key(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    source = tmp_path / "new.dat"
    source.write_bytes(b"new")
    put(store, "a", b"old")

    with pytest.raises(FileExistsError):
        store.put_file("a", source, overwrite=False)

    assert store.path("a").read_bytes() == b"old"


def test_put_refuses_object_under_an_object(store: LocalObjectStore) -> None:
    put(store, "a")

    with pytest.raises(KeyConflict):
        put(store, "a/b")

    assert listed_keys(store) == ["a"]


def test_put_refuses_object_where_a_folder_is(store: LocalObjectStore) -> None:
    put(store, "a/b")

    with pytest.raises(KeyConflict):
        put(store, "a")

    assert listed_keys(store) == ["a/b"]


def test_list_orders_keys_by_utf8_bytes_across_folders(store: LocalObjectStore) -> None:
    for key in ["é", "ab", "a/c", "a-b", "a/b", "Z"]:
        put(store, key)

    assert listed_keys(store) == ["Z", "a-b", "a/b", "a/c", "ab", "é"]


def test_list_filters_by_prefix_and_start_after(store: LocalObjectStore) -> None:
    for key in ["user-3/cavity/0/U", "user-3/cavity/0/p", "user-3/cave", "user-3/duct/1"]:
        put(store, key)

    assert listed_keys(store, "user-3/cav") == [
        "user-3/cave",
        "user-3/cavity/0/U",
        "user-3/cavity/0/p",
    ]
    assert listed_keys(store, "user-3/", "user-3/cavity/0/U") == [
        "user-3/cavity/0/p",
        "user-3/duct/1",
    ]


def test_list_walks_only_the_folder_under_the_prefix(
    store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ["user-3/cavity/0/U", "user-3/cavity/system/controlDict", "user-4/big/x"]:
        put(store, key)
    scanned = []
    real_scandir = os.scandir
    # Patched only around the listing: os is shared, and teardown's rmtree scans by descriptor.
    with monkeypatch.context() as patch:
        patch.setattr(
            store_module.os,
            "scandir",
            lambda path: scanned.append(Path(path)) or real_scandir(path),
        )
        keys = listed_keys(store, "user-3/cavity/")

    assert keys == ["user-3/cavity/0/U", "user-3/cavity/system/controlDict"]
    cavity = store.root / "objects" / "user-3" / "cavity"
    assert scanned == [cavity, cavity / "0", cavity / "system"]


def test_list_never_shows_staging_or_sidecar_files(store: LocalObjectStore) -> None:
    put(store, "a", metadata={"m": "1"})
    (store.root / ".tmp" / "incoming-leftover").write_bytes(b"partial")

    assert listed_keys(store) == ["a"]


def test_list_folder_yields_objects_and_sub_folders(store: LocalObjectStore) -> None:
    for key in ["user-3/a.txt", "user-3/case/0/U", "user-3/case/1/U", "user-3/z.txt"]:
        put(store, key)

    entries = list(store.list_folder("user-3/"))

    assert [getattr(entry, "key", entry) for entry in entries] == [
        "user-3/a.txt",
        "user-3/case/",
        "user-3/z.txt",
    ]
    after_case = list(store.list_folder("user-3/", start_after="user-3/case/1/U"))
    assert after_case == [store.head("user-3/z.txt")]


def test_folder_marker_is_a_listed_empty_folder(store: LocalObjectStore) -> None:
    info = store.put_stream("user-3/results/", io.BytesIO(b""))

    assert info.size == 0
    assert info.etag == md5_hex(b"")
    assert store.path("user-3/results/").is_dir()
    assert listed_keys(store) == ["user-3/results/"]
    assert listed_keys(store, "user-3/results/") == ["user-3/results/"]


def test_folder_marker_refuses_content(store: LocalObjectStore) -> None:
    with pytest.raises(InvalidKey):
        put(store, "folder/", b"content")

    assert listed_keys(store) == []


def test_delete_of_marker_keeps_the_folder_contents(store: LocalObjectStore) -> None:
    put(store, "f/", b"")
    put(store, "f/a")

    assert store.delete("f/") is True

    assert listed_keys(store) == ["f/a"]


def test_delete_removes_now_empty_parent_folders_but_not_markers(store: LocalObjectStore) -> None:
    put(store, "keep/", b"")
    put(store, "keep/deep/er/x")

    assert store.delete("keep/deep/er/x") is True

    assert not (store.root / "objects" / "keep" / "deep").exists()
    assert listed_keys(store) == ["keep/"]


def test_delete_returns_false_when_absent(store: LocalObjectStore) -> None:
    assert store.delete("nothing/here") is False


def test_multipart_joins_parts_in_order_with_s3_etag(store: LocalObjectStore) -> None:
    upload_id = store.create_multipart("user-3/big.bin", {"kind": "mesh"})
    etag_1 = store.put_part(upload_id, 1, io.BytesIO(b"a" * MIB))
    etag_2 = store.put_part(upload_id, 2, io.BytesIO(b"b" * 10))

    info = store.complete_multipart(upload_id, [(1, f'"{etag_1}"'), (2, etag_2)])

    md5s = bytes.fromhex(md5_hex(b"a" * MIB) + md5_hex(b"b" * 10))
    assert info.etag == md5_hex(md5s) + "-2"
    assert info.metadata == {"kind": "mesh"}
    assert store.path("user-3/big.bin").read_bytes() == b"a" * MIB + b"b" * 10
    assert list((store.root / "uploads").iterdir()) == []
    assert staging_files(store) == []


def test_multipart_refuses_an_etag_that_was_not_uploaded(store: LocalObjectStore) -> None:
    upload_id = store.create_multipart("k")
    store.put_part(upload_id, 1, io.BytesIO(b"a"))

    with pytest.raises(InvalidPart):
        store.complete_multipart(upload_id, [(1, md5_hex(b"b"))])

    assert store.head("k") is None


def test_multipart_refuses_parts_out_of_order(store: LocalObjectStore) -> None:
    upload_id = store.create_multipart("k")
    etag_1 = store.put_part(upload_id, 1, io.BytesIO(b"a"))
    etag_2 = store.put_part(upload_id, 2, io.BytesIO(b"b"))

    with pytest.raises(InvalidPartOrder):
        store.complete_multipart(upload_id, [(2, etag_2), (1, etag_1)])


def test_put_part_refuses_numbers_outside_1_to_10000(store: LocalObjectStore) -> None:
    upload_id = store.create_multipart("k")

    with pytest.raises(InvalidPart):
        store.put_part(upload_id, 10001, io.BytesIO(b"a"))


@pytest.mark.parametrize("number", [0, -1, 10001])
def test_complete_multipart_refuses_numbers_outside_1_to_10000(
    store: LocalObjectStore, number: int
) -> None:
    upload_id = store.create_multipart("k")
    etag = store.put_part(upload_id, 1, io.BytesIO(b"a"))

    with pytest.raises(InvalidPart) as excinfo:
        store.complete_multipart(upload_id, [(number, etag)])

    assert excinfo.type is InvalidPart
    assert store.head("k") is None


def test_abort_multipart_forgets_the_upload(store: LocalObjectStore) -> None:
    upload_id = store.create_multipart("k")
    store.put_part(upload_id, 1, io.BytesIO(b"a"))

    store.abort_multipart(upload_id)

    with pytest.raises(NoSuchUpload):
        store.put_part(upload_id, 2, io.BytesIO(b"b"))
    assert list((store.root / "uploads").iterdir()) == []


@pytest.mark.parametrize("upload_id", ["../../objects", "0" * 32, ""])
def test_unknown_or_malformed_upload_ids_are_no_such_upload(
    store: LocalObjectStore, upload_id: str
) -> None:
    with pytest.raises(NoSuchUpload):
        store.upload_key(upload_id)
