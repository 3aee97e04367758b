"""Specification of LocalObjectStore: keys, atomic writes, listings, folders and multipart."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
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


# Multipart parts written in place, into one data file per upload


def upload_parts(store: LocalObjectStore, upload_id: str, parts: dict[int, bytes]) -> dict:
    """Upload parts in the dict's order, with their lengths known; return ETags by number."""
    return {
        number: store.put_part(upload_id, number, io.BytesIO(data), length=len(data))
        for number, data in parts.items()
    }


def multipart_etag(part_etags: list[str]) -> str:
    """Return S3's ETag of an object completed from parts with these ETags."""
    return md5_hex(b"".join(bytes.fromhex(etag) for etag in part_etags)) + f"-{len(part_etags)}"


def data_file(store: LocalObjectStore, upload_id: str) -> Path:
    """Return the file an upload writes its parts into."""
    return store.root / "uploads" / upload_id / "data"


def assert_upload_gone(store: LocalObjectStore) -> None:
    """Check that no upload state and no staging file is left."""
    assert list((store.root / "uploads").iterdir()) == []
    assert staging_files(store) == []


def complete_outcome(store: LocalObjectStore, upload_id: str, parts: list) -> str:
    """Try to complete an upload; say whether it completed, was invalid or was gone."""
    try:
        store.complete_multipart(upload_id, parts)
    except NoSuchUpload:
        return "gone"
    except InvalidPart:
        return "invalid"
    return "completed"


class SlowStream(io.RawIOBase):
    """A stream that hands out its bytes 64 KiB at a time, pausing, like a slow client."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)

    def read(self, size: int = -1) -> bytes:
        time.sleep(0.001)
        chunk, self.data = self.data[: 64 * 1024], self.data[64 * 1024 :]
        return bytes(chunk)


def test_multipart_of_equal_parts_becomes_the_object_without_a_copy(
    store: LocalObjectStore,
) -> None:
    parts = {1: os.urandom(MIB), 2: os.urandom(MIB), 3: os.urandom(1000)}
    upload_id = store.create_multipart("user-3/big.bin", {"kind": "mesh"})
    etags = upload_parts(store, upload_id, parts)
    inode = data_file(store, upload_id).stat().st_ino

    info = store.complete_multipart(upload_id, sorted(etags.items()))

    assert store.path("user-3/big.bin").read_bytes() == parts[1] + parts[2] + parts[3]
    assert store.path("user-3/big.bin").stat().st_ino == inode
    assert info.etag == multipart_etag([etags[1], etags[2], etags[3]])
    assert info.size == 2 * MIB + 1000
    assert info.metadata == {"kind": "mesh"}
    assert_upload_gone(store)


def test_multipart_parts_arriving_out_of_order_land_in_their_slots(
    store: LocalObjectStore,
) -> None:
    parts = {1: os.urandom(MIB), 4: os.urandom(77), 3: os.urandom(MIB), 2: os.urandom(MIB)}
    upload_id = store.create_multipart("k")
    etags = upload_parts(store, upload_id, parts)
    inode = data_file(store, upload_id).stat().st_ino

    store.complete_multipart(upload_id, sorted(etags.items()))

    assert store.path("k").read_bytes() == b"".join(parts[number] for number in (1, 2, 3, 4))
    assert store.path("k").stat().st_ino == inode


def test_multipart_part_uploaded_again_with_same_size_replaces_its_slot(
    store: LocalObjectStore,
) -> None:
    first, second, again = os.urandom(MIB), os.urandom(MIB), os.urandom(MIB)
    upload_id = store.create_multipart("k")
    etags = upload_parts(store, upload_id, {1: first, 2: second})
    new_etag = upload_parts(store, upload_id, {1: again})[1]

    with pytest.raises(InvalidPart):
        store.complete_multipart(upload_id, [(1, etags[1]), (2, etags[2])])
    info = store.complete_multipart(upload_id, [(1, new_etag), (2, etags[2])])

    assert store.path("k").read_bytes() == again + second
    assert info.etag == multipart_etag([new_etag, etags[2]])


@pytest.mark.parametrize("new_size", [2 * MIB, 1000])
def test_multipart_part_uploaded_again_with_other_size_gives_the_new_bytes(
    store: LocalObjectStore, new_size: int
) -> None:
    first, second, again = os.urandom(MIB), os.urandom(MIB), os.urandom(new_size)
    upload_id = store.create_multipart("k")
    etags = upload_parts(store, upload_id, {1: first, 2: second})
    new_etag = upload_parts(store, upload_id, {1: again})[1]

    info = store.complete_multipart(upload_id, [(1, new_etag), (2, etags[2])])

    assert store.path("k").read_bytes() == again + second
    assert info.etag == multipart_etag([new_etag, etags[2]])
    assert_upload_gone(store)


@pytest.mark.parametrize(
    "sizes",
    [
        {1: 1000, 2: MIB, 3: 10},
        {1: MIB, 2: 1000, 3: MIB},
        {3: 1000, 1: MIB, 2: MIB},
        {1: MIB, 2: 0, 3: 10},
    ],
)
def test_multipart_parts_of_irregular_sizes_are_joined_in_order(
    store: LocalObjectStore, sizes: dict[int, int]
) -> None:
    parts = {number: os.urandom(size) for number, size in sizes.items()}
    upload_id = store.create_multipart("k")
    etags = upload_parts(store, upload_id, parts)

    info = store.complete_multipart(upload_id, sorted(etags.items()))

    assert store.path("k").read_bytes() == b"".join(parts[number] for number in (1, 2, 3))
    assert info.etag == multipart_etag([etags[1], etags[2], etags[3]])
    assert_upload_gone(store)


@pytest.mark.parametrize("listed", [(1, 3), (1, 2), (2, 4), (4,)])
def test_multipart_completing_some_parts_joins_only_those(
    store: LocalObjectStore, listed: tuple[int, ...]
) -> None:
    parts = {number: os.urandom(MIB) for number in (1, 2, 3)} | {4: os.urandom(99)}
    upload_id = store.create_multipart("k")
    etags = upload_parts(store, upload_id, parts)

    info = store.complete_multipart(upload_id, [(number, etags[number]) for number in listed])

    assert store.path("k").read_bytes() == b"".join(parts[number] for number in listed)
    assert info.etag == multipart_etag([etags[number] for number in listed])
    assert_upload_gone(store)


def test_abort_multipart_after_parts_in_place_leaves_nothing(store: LocalObjectStore) -> None:
    upload_id = store.create_multipart("k")
    upload_parts(store, upload_id, {1: os.urandom(MIB), 2: os.urandom(2 * MIB)})

    store.abort_multipart(upload_id)

    assert_upload_gone(store)
    assert store.head("k") is None
    with pytest.raises(NoSuchUpload):
        upload_parts(store, upload_id, {3: b"late"})
    with pytest.raises(NoSuchUpload):
        store.abort_multipart(upload_id)


def test_multipart_parts_uploaded_by_concurrent_threads_make_the_object(
    store: LocalObjectStore,
) -> None:
    parts = {number: os.urandom(256 * 1024) for number in range(1, 16)} | {16: os.urandom(5)}
    upload_id = store.create_multipart("k")

    def upload(number: int) -> tuple[int, str]:
        stream = SlowStream(parts[number])
        return number, store.put_part(upload_id, number, stream, length=len(parts[number]))

    with ThreadPoolExecutor(max_workers=8) as pool:
        etags = dict(pool.map(upload, [*range(15, 0, -1), 16]))
    store.complete_multipart(upload_id, sorted(etags.items()))

    assert store.path("k").read_bytes() == b"".join(parts[number] for number in range(1, 17))


def test_multipart_racing_uploads_of_one_part_leave_one_whole_version(
    store: LocalObjectStore,
) -> None:
    versions = [os.urandom(MIB) for _ in range(4)]
    upload_id = store.create_multipart("k")
    tail_etag = upload_parts(store, upload_id, {1: versions[0], 2: b"tail"})[2]

    def upload(data: bytes) -> str:
        return store.put_part(upload_id, 1, SlowStream(data), length=len(data))

    with ThreadPoolExecutor(max_workers=4) as pool:
        etags = list(pool.map(upload, versions))
    outcomes = [complete_outcome(store, upload_id, [(1, etag), (2, tail_etag)]) for etag in etags]

    # Only the version written last can complete; once it has, the upload is gone.
    winner = outcomes.index("completed")
    assert outcomes == ["invalid"] * winner + ["completed"] + ["gone"] * (3 - winner)
    assert store.path("k").read_bytes() == versions[winner] + b"tail"


def test_multipart_retried_after_a_broken_part_upload_completes(
    store: LocalObjectStore,
) -> None:
    first, second = os.urandom(MIB), os.urandom(MIB)
    upload_id = store.create_multipart("k")
    etags = upload_parts(store, upload_id, {1: first})
    with pytest.raises(ConnectionResetError):
        store.put_part(upload_id, 2, BrokenStream(MIB // 2), length=MIB)
    with pytest.raises(DigestMismatch):
        store.put_part(upload_id, 2, io.BytesIO(second), "0" * 64, length=MIB)

    etags |= upload_parts(store, upload_id, {2: second})
    store.complete_multipart(upload_id, sorted(etags.items()))

    assert store.path("k").read_bytes() == first + second


@pytest.mark.parametrize("lost", [False, True])
def test_multipart_slot_written_before_a_reboot_is_read_back_at_completion(
    store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch, lost: bool
) -> None:
    first, second = os.urandom(MIB), os.urandom(MIB)
    upload_id = store.create_multipart("k")
    etags = upload_parts(store, upload_id, {1: first, 2: second})
    if lost:
        # What a crash before the data reached the disk leaves: the record, but zeros.
        with data_file(store, upload_id).open("r+b") as data:
            data.seek(MIB)
            data.write(bytes(MIB))

    monkeypatch.setattr(store_module, "_read_boot_id", lambda: "the next boot")
    rebooted = LocalObjectStore(store.root)

    if lost:
        with pytest.raises(InvalidPart):
            rebooted.complete_multipart(upload_id, sorted(etags.items()))
        assert rebooted.head("k") is None
    else:
        rebooted.complete_multipart(upload_id, sorted(etags.items()))
        assert rebooted.path("k").read_bytes() == first + second


def part_files(store: LocalObjectStore, upload_id: str, number: int) -> list[str]:
    """Return the names of the files kept for one part number, its slot record excluded."""
    folder = store.root / "uploads" / upload_id
    return sorted(path.name for path in folder.glob(f"{number:05d}.*") if path.suffix != ".slot")


def stride_of(store: LocalObjectStore, upload_id: str) -> int | None:
    """Return the upload's recorded slot size, or None if none is recorded."""
    path = store.root / "uploads" / upload_id / "stride"
    return int(path.read_text()) if path.exists() else None


@pytest.mark.parametrize(
    "sizes",
    [(MIB, 2 * MIB), (2 * MIB, MIB), (2 * MIB, 3 * MIB), (MIB, MIB)],
    ids=["slot-then-file", "file-then-slot", "file-then-file", "slot-then-slot"],
)
def test_multipart_part_uploaded_again_refuses_the_earlier_etag(
    store: LocalObjectStore, sizes: tuple[int, int]
) -> None:
    first, old, new = os.urandom(MIB), os.urandom(sizes[0]), os.urandom(sizes[1])
    upload_id = store.create_multipart("k")
    etags = upload_parts(store, upload_id, {1: first, 2: old})
    new_etag = upload_parts(store, upload_id, {2: new})[2]

    with pytest.raises(InvalidPart):
        store.complete_multipart(upload_id, [(1, etags[1]), (2, etags[2])])
    assert part_files(store, upload_id, 2) in ([], [f"00002.{new_etag}"])
    store.complete_multipart(upload_id, [(1, etags[1]), (2, new_etag)])

    assert store.path("k").read_bytes() == first + new


def test_multipart_part_that_broke_off_after_setting_the_stride_costs_only_a_copy(
    store: LocalObjectStore,
) -> None:
    parts = {1: os.urandom(MIB), 2: os.urandom(MIB), 3: os.urandom(10)}
    upload_id = store.create_multipart("k")
    with pytest.raises(LengthMismatch):
        store.put_part(upload_id, 1, io.BytesIO(b"x" * 10), length=5 * 1024**3)
    assert stride_of(store, upload_id) == 5 * 1024**3

    etags = upload_parts(store, upload_id, parts)
    store.complete_multipart(upload_id, sorted(etags.items()))

    assert store.path("k").read_bytes() == parts[1] + parts[2] + parts[3]
    assert_upload_gone(store)


def test_multipart_failed_part_leaves_no_file_behind(store: LocalObjectStore) -> None:
    upload_id = store.create_multipart("k")
    with pytest.raises(LengthMismatch):
        store.put_part(upload_id, 2, io.BytesIO(b"x" * 10), length=MIB)

    assert part_files(store, upload_id, 2) == []
    assert staging_files(store) == []
    with pytest.raises(InvalidPart):
        store.complete_multipart(upload_id, [(2, "0" * 32)])


def test_multipart_parts_arriving_before_part_1_still_land_in_place(
    store: LocalObjectStore,
) -> None:
    parts = {3: os.urandom(MIB), 1: os.urandom(MIB), 2: os.urandom(MIB), 4: os.urandom(77)}
    upload_id = store.create_multipart("k")
    inode = data_file(store, upload_id).stat().st_ino
    etags = upload_parts(store, upload_id, parts)

    assert [part_files(store, upload_id, number) for number in parts] == [[], [], [], []]
    store.complete_multipart(upload_id, sorted(etags.items()))

    assert store.path("k").read_bytes() == b"".join(parts[number] for number in (1, 2, 3, 4))
    assert store.path("k").stat().st_ino == inode
    assert_upload_gone(store)


@pytest.mark.parametrize("error", [errno.EFBIG, errno.ENOSPC])
def test_multipart_slot_the_data_file_cannot_hold_becomes_a_part_file(
    store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    parts = {1: os.urandom(MIB), 3: os.urandom(MIB)}
    upload_id = store.create_multipart("k")
    data_inode = data_file(store, upload_id).stat().st_ino
    write = os.pwrite

    def pwrite_up_to_2_mib(handle: int, data: bytes, position: int) -> int:
        """Write like a data file that cannot grow past 2.5 MiB."""
        if os.fstat(handle).st_ino == data_inode and position + len(data) > 5 * MIB // 2:
            raise OSError(error, os.strerror(error))
        return write(handle, data, position)

    monkeypatch.setattr(os, "pwrite", pwrite_up_to_2_mib)
    etags = upload_parts(store, upload_id, parts)

    assert part_files(store, upload_id, 3) == [f"00003.{etags[3]}"]
    assert data_file(store, upload_id).stat().st_size == MIB
    store.complete_multipart(upload_id, sorted(etags.items()))
    assert store.path("k").read_bytes() == parts[1] + parts[3]
