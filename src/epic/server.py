"""`epic serve`: the API, the built-in S3 endpoint and the worker in one process."""

from __future__ import annotations

import gc
import json
import logging
import signal
import threading
from dataclasses import dataclass

from cheroot import errors as cheroot_errors
from cheroot import server as cheroot_server
from cheroot import wsgi
from django.conf import settings
from django.urls import get_resolver

logger = logging.getLogger(__name__)

SERVER_THREADS = 16
# Connections the kernel holds while every thread is busy (cheroot's default of 5 resets
# clients under a burst of submissions).
LISTEN_BACKLOG = 128
# Bounds on what one request may send: headers on both ports, bodies on the API's.
MAX_HEADER_BYTES = 64 * 1024
MAX_API_BODY_BYTES = 20 * 1024 * 1024


@dataclass
class Endpoints:
    """Where the running servers listen."""

    api_url: str
    s3_url: str


def _url(host: str, port: int) -> str:
    """An http URL for a bound address, bracketing IPv6 hosts."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class JsonErrorRequest(cheroot_server.HTTPRequest):
    """cheroot's request, whose own refusals come in DRF's error shape instead of plain text.

    cheroot answers by itself, before the application sees anything, a request line or headers
    that are too long or malformed.
    """

    def simple_response(self, status, msg=""):
        """Write cheroot's short answer; an error becomes {"detail": ..., "code": ...}."""
        status = str(status)
        if not status.startswith(("4", "5")):
            return super().simple_response(status, msg)

        reason = status[4:] or "Bad Request"
        code = reason.lower().replace(" ", "_").replace("-", "_")
        body = json.dumps({"detail": f"{reason}.", "code": code}).encode()
        head = [f"{self.server.protocol} {status}", f"Content-Length: {len(body)}"]
        head.append("Content-Type: application/json")
        if status[:3] in {"413", "414"}:
            self.close_connection = True
            head.append("Connection: close")
        try:
            self.conn.wfile.write("\r\n".join([*head, "", ""]).encode("ISO-8859-1") + body)
        except OSError as error:
            if error.args and error.args[0] not in cheroot_errors.socket_errors_to_ignore:
                raise


class JsonErrorConnection(cheroot_server.HTTPConnection):
    """A connection whose requests refuse in DRF's error shape."""

    RequestHandlerClass = JsonErrorRequest


def _bind(host: str, port: int, app, max_body: int = 0, json_errors: bool = False):
    """Create a cheroot server and bind it now, so that port 0 resolves to a real port.

    `max_body` of 0 means no bound (the S3 endpoint streams bodies of any size to disk);
    `json_errors` makes cheroot's own refusals JSON, as the API's are.
    """
    server = wsgi.Server(
        (host, port), app, numthreads=SERVER_THREADS, request_queue_size=LISTEN_BACKLOG
    )
    server.max_request_header_size = MAX_HEADER_BYTES
    server.max_request_body_size = max_body
    if json_errors:
        server.ConnectionClass = JsonErrorConnection
    server.prepare()
    return server


def _s3_application():
    """The built-in S3 endpoint over this installation's data store."""
    from epic.data.s3.app import S3Application
    from epic.data.services import object_store, resolve_credential

    object_store().remove_stale()
    return S3Application(
        object_store(),
        bucket=settings.EPIC_S3_BUCKET,
        region=settings.EPIC_S3_REGION,
        resolve_credential=resolve_credential,
    )


def database_label() -> str:
    """The database in use, for people to check (no password)."""
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        return f"SQLite {database['NAME']}"
    host = database.get("HOST") or "local socket"
    return f"PostgreSQL {host}:{database.get('PORT') or 5432}/{database['NAME']}"


def freeze_startup_objects() -> None:
    """Load every view now and keep what startup built out of the garbage collector's reach.

    Modules, classes and routes live as long as the process; left in the collector's oldest
    generation, each full collection walks them all and stalls a request for tens of ms.
    """
    get_resolver().url_patterns  # noqa: B018 - importing the views is the point
    gc.collect()
    gc.freeze()


def serve(host: str, port: int, s3_port: int) -> None:
    """Serve until SIGINT or SIGTERM, then stop accepting and let running work be."""
    from django.core.wsgi import get_wsgi_application

    from epic.compute.isolation import open_home
    from epic.worker.loop import Worker

    if settings.EPIC_ISOLATE_JOBS:
        open_home()
    s3_server = _bind(host, s3_port, _s3_application())
    s3_url = settings.EPIC_S3_ENDPOINT_URL or _url(host, s3_server.bind_addr[1])
    settings.EPIC_S3_ENDPOINT_URL = s3_url
    try:
        api_server = _bind(
            host, port, get_wsgi_application(), MAX_API_BODY_BYTES, json_errors=True
        )
    except OSError:
        # The S3 endpoint's threads would keep the process alive, holding its port.
        s3_server.stop()
        raise
    freeze_startup_objects()
    # Compute nodes reach the step I/O endpoint here unless the operator said otherwise.
    settings.EPIC_API_URL = settings.EPIC_API_URL or _url(host, api_server.bind_addr[1])
    endpoints = Endpoints(api_url=_url(host, api_server.bind_addr[1]) + "/api/v2", s3_url=s3_url)

    stop = threading.Event()
    threads = [
        threading.Thread(target=api_server.serve, name="epic-api", daemon=True),
        threading.Thread(target=s3_server.serve, name="epic-s3", daemon=True),
    ]
    if settings.EPIC_EMBEDDED_WORKER:
        worker = Worker()
        worker.register()
        threads.append(threading.Thread(target=worker.run, args=(stop,), name="epic-worker"))
    for thread in threads:
        thread.start()

    print(f"EPIC API:          {endpoints.api_url}", flush=True)
    print(f"EPIC S3 endpoint:  {endpoints.s3_url}", flush=True)
    print(f"EPIC_HOME:         {settings.EPIC_HOME}", flush=True)
    print(f"Database:          {database_label()}", flush=True)
    wait_for_signal(stop)

    api_server.stop()
    s3_server.stop()
    for thread in threads:
        thread.join(timeout=30)
    logger.info("Stopped")


def wait_for_signal(stop: threading.Event) -> None:
    """Block until SIGINT or SIGTERM arrives, then set `stop`."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1)
