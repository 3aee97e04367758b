"""An S3 stand-in that reads every request body and keeps nothing: what a client can do alone.

It answers the calls of boto3's multipart upload_file (create, part, complete) and a single
PUT, without checking signatures or storing bytes, so that the time boto3 takes to upload to
it is the client's own cost: reading the file, hashing each part and sending it. It also
serves one object of zeros (OBJECT_SIZE bytes unless told) to any HEAD or ranged GET.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

READ_CHUNK = 2**20
OBJECT_SIZE = 2**30
ZEROS = bytes(READ_CHUNK)
RANGE = re.compile(r"bytes=(\d+)-(\d*)")
CREATED = (
    b'<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult>'
    b"<Bucket>null</Bucket><Key>object</Key><UploadId>upload</UploadId>"
    b"</InitiateMultipartUploadResult>"
)
COMPLETED = (
    b'<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult>'
    b'<Bucket>null</Bucket><Key>object</Key><ETag>"0-1"</ETag>'
    b"</CompleteMultipartUploadResult>"
)
ETAG = '"00000000000000000000000000000000"'


class NullS3Handler(BaseHTTPRequestHandler):
    """Reads the body, answers what boto3 expects, keeps nothing."""

    protocol_version = "HTTP/1.1"
    object_size = OBJECT_SIZE

    def log_message(self, format, *args) -> None:
        """Stay quiet: a log line per part would cost more than the part."""

    def do_HEAD(self) -> None:
        """The served object's size."""
        self._object_head(200, self.object_size)

    def do_GET(self) -> None:
        """The object, or the byte range asked for, as zeros."""
        asked = RANGE.fullmatch(self.headers.get("Range", ""))
        size = self.object_size
        first, last = 0, size - 1
        if asked:
            first = int(asked[1])
            last = min(int(asked[2]) if asked[2] else last, size - 1)
            self._object_head(206, last - first + 1, f"bytes {first}-{last}/{size}")
        else:
            self._object_head(200, size)
        left = last - first + 1
        while left:
            sent = min(left, READ_CHUNK)
            self.wfile.write(ZEROS[:sent])
            left -= sent

    def _object_head(self, status: int, length: int, content_range: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", ETAG)
        self.send_header("Last-Modified", "Fri, 04 Dec 2026 00:00:00 GMT")
        if content_range:
            self.send_header("Content-Range", content_range)
        self.end_headers()

    def do_PUT(self) -> None:
        """A part, or a whole small object."""
        self._read_body()
        self._answer(b"", ETAG)

    def do_POST(self) -> None:
        """Create or complete a multipart upload."""
        self._read_body()
        self._answer(CREATED if "uploads" in self.path else COMPLETED)

    def _read_body(self) -> None:
        left = int(self.headers.get("Content-Length", 0))
        while left:
            chunk = self.rfile.read(min(left, READ_CHUNK))
            if not chunk:
                break
            left -= len(chunk)

    def _answer(self, body: bytes, etag: str | None = None) -> None:
        self.send_response(200)
        if etag:
            self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_null_s3(object_size: int = OBJECT_SIZE) -> tuple[ThreadingHTTPServer, str]:
    """Serve the stand-in on a free loopback port; return the server and its URL."""
    handler = type("SizedNullS3Handler", (NullS3Handler,), {"object_size": object_size})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
