"""An S3 stand-in that reads every request body and keeps nothing: what a client can do alone.

It answers the calls of boto3's multipart upload_file (create, part, complete) and a single
PUT, without checking signatures or storing bytes, so that the time boto3 takes to upload to
it is the client's own cost: reading the file, hashing each part and sending it.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

READ_CHUNK = 2**20
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

    def log_message(self, format, *args) -> None:
        """Stay quiet: a log line per part would cost more than the part."""

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


def start_null_s3() -> tuple[ThreadingHTTPServer, str]:
    """Serve the stand-in on a free loopback port; return the server and its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), NullS3Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
