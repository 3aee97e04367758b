"""Upload and download of a 1 GiB file through the built-in S3 endpoint, against a file copy.

Prints MiB/s for: a plain copy on the same disk (with and without fsync), boto3's
upload_file and download_file against `epic serve`. Target: S3 at least half the copy's speed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.servers import epic_command, s3_client, start_server

SIZE = int(os.environ.get("EPIC_BENCH_BYTES", 2**30))
MIB = 2**20


def timed(action) -> float:
    """Seconds an action takes."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


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

        copy = timed(lambda: shutil.copyfile(source, work / "copy.bin"))
        copy_sync = timed(lambda: copy_with_fsync(source, work / "copy2.bin"))
        (work / "copy.bin").unlink()
        (work / "copy2.bin").unlink()

        home = work / "home"
        home.mkdir()
        process, api_url, _ = start_server(home)
        try:
            epic_command(home, "admin", "user", "create", "bench", "--team", "bench")
            token = epic_command(home, "admin", "token", "create", "bench").strip()
            client, bucket, key = data_session_client(api_url, token)
            upload = timed(lambda: client.upload_file(str(source), bucket, key))
            download = timed(lambda: client.download_file(bucket, key, str(work / "back.bin")))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)

    size = SIZE / MIB
    print(f"file of {size:.0f} MiB")
    print(f"plain copy:          {size / copy:8.1f} MiB/s")
    print(f"copy + fsync:        {size / copy_sync:8.1f} MiB/s")
    print(f"S3 upload_file:      {size / upload:8.1f} MiB/s ({copy / upload:.2f} of plain copy)")
    print(
        f"S3 download_file:    {size / download:8.1f} MiB/s ({copy / download:.2f} of plain copy)"
    )


if __name__ == "__main__":
    main()
