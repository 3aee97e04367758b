"""Upload and download of a 1 GiB file through the built-in S3 endpoint, against a file copy.

Prints MiB/s for: a plain copy on the same disk (with and without fsync), boto3's
upload_file and download_file against `epic serve`. Target: S3 at least half the copy's speed.

Each way is timed ROUNDS times and the median is reported, with the spread: a plain copy of a
file in the page cache runs at memory speed or at disk speed depending on how much the kernel
is writing back at the time, so one copy says little. Dirty pages are written back (sync)
before each timing, so that no measurement pays for the one before it. An upload is durable
when it is answered (the store fsyncs the object), as a copy with fsync is; a download is
not fsynced by boto3, as a plain copy is not: both ratios are printed for each.

Last, the same upload_file and download_file go to a stand-in S3 server that only reads the
bytes, or sends zeros (`_null_s3`): the client's own ceiling on this machine, which no server
can raise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.servers import epic_command, s3_client, start_server

from benchmarks._null_s3 import start_null_s3

SIZE = int(os.environ.get("EPIC_BENCH_BYTES", 2**30))
MIB = 2**20
ROUNDS = int(os.environ.get("EPIC_BENCH_ROUNDS", 3))


def timed(action) -> float:
    """Seconds an action takes, after the kernel has written back what earlier ones left."""
    os.sync()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def rounds(action, cleanup) -> list[float]:
    """The seconds of ROUNDS runs of an action, cleaning up after each."""
    seconds = []
    for _ in range(ROUNDS):
        seconds.append(timed(action))
        cleanup()
    return seconds


def copy_with_fsync(source: Path, target: Path) -> None:
    """Copy a file and make it durable, as the store does with every object."""
    shutil.copyfile(source, target)
    with open(target, "rb+") as stream:
        os.fsync(stream.fileno())


def data_session_client(api_url: str, token: str):
    """A boto3 client with a fresh data session."""
    request = urllib.request.Request(
        api_url + "/data/session/", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        session = json.loads(response.read())
    return s3_client(session), session["s3_location"], session["s3_obj_key"] + "bench/big.bin"


def main() -> None:
    """Make the file, time each way of moving it, print the figures."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("EPIC_BENCH_DIR")) as folder:
        work = Path(folder)
        work.chmod(0o711)
        source = work / "big.bin"
        with open(source, "wb") as stream:
            for _ in range(SIZE // (64 * MIB)):
                stream.write(os.urandom(64 * MIB))

        copy = work / "copy.bin"
        copies = rounds(lambda: shutil.copyfile(source, copy), copy.unlink)
        synced_copies = rounds(lambda: copy_with_fsync(source, copy), copy.unlink)

        home = work / "home"
        home.mkdir()
        process, api_url, _ = start_server(home)
        try:
            epic_command(home, "admin", "user", "create", "bench", "--team", "bench")
            token = epic_command(home, "admin", "token", "create", "bench").strip()
            client, bucket, key = data_session_client(api_url, token)
            uploads = rounds(
                lambda: client.upload_file(str(source), bucket, key),
                lambda: client.delete_object(Bucket=bucket, Key=key),
            )
            client.upload_file(str(source), bucket, key)
            back = work / "back.bin"
            downloads = rounds(lambda: client.download_file(bucket, key, str(back)), back.unlink)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        null_uploads, null_downloads = with_null_server(source, back)
    report(copies, synced_copies, uploads, downloads, null_uploads, null_downloads)


def with_null_server(source: Path, back: Path) -> tuple[list[float], list[float]]:
    """The seconds of boto3's upload_file and download_file against a server doing nothing."""
    import boto3

    server, url = start_null_s3(SIZE)
    try:
        client = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="benchmark",
            aws_secret_access_key="benchmark",  # noqa: S106 - the stand-in checks nothing
        )
        uploads = rounds(lambda: client.upload_file(str(source), "null", "object"), lambda: None)
        downloads = rounds(lambda: client.download_file("null", "object", str(back)), back.unlink)
        return uploads, downloads
    finally:
        server.shutdown()
        server.server_close()


def report(copies, synced_copies, uploads, downloads, null_uploads, null_downloads) -> None:
    """Print each way's median speed and spread, and the S3 medians against both copies."""
    size = SIZE / MIB
    copy, synced = statistics.median(copies), statistics.median(synced_copies)
    print(f"file of {size:.0f} MiB, median of {ROUNDS} runs each (slowest - fastest)")
    for name, seconds in (
        ("plain copy", copies),
        ("copy + fsync", synced_copies),
        ("S3 upload_file", uploads),
        ("S3 download_file", downloads),
        ("upload to null S3", null_uploads),
        ("download from null", null_downloads),
    ):
        median = statistics.median(seconds)
        line = f"{name + ':':20}{size / median:8.1f} MiB/s"
        line += f"  ({size / max(seconds):.0f} - {size / min(seconds):.0f})"
        if name != "plain copy" and name != "copy + fsync":
            line += f"  {copy / median:.2f} of plain copy, {synced / median:.2f} of copy + fsync"
        print(line)


if __name__ == "__main__":
    main()
