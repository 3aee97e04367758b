"""The S3 endpoint as a WSGI application serving one bucket of a LocalObjectStore, path-style."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from http import HTTPStatus
from urllib.parse import unquote

from epic.data.s3 import bodies, bucket, documents, multipart, objects
from epic.data.s3.auth import CredentialResolver, authenticate
from epic.data.s3.errors import S3Error, from_store_error
from epic.data.s3.request import Operation, Response, S3Request, parse_request, xml_response
from epic.data.store import LocalObjectStore

logger = logging.getLogger(__name__)

Handler = Callable[[Operation], Response]

# Query parameters that select an S3 operation, looked for in this order. Those no route below
# uses (acl, tagging, versions, ...) select operations this endpoint does not implement.
_SELECTORS = (
    "uploadId",
    "uploads",
    "delete",
    "location",
    "list-type",
    "partNumber",
    "versionId",
    "versions",
    "versioning",
    "acl",
    "tagging",
    "policy",
    "cors",
    "lifecycle",
    "website",
    "restore",
    "select",
    "attributes",
    "retention",
    "legal-hold",
    "encryption",
)

# Limitation: ListObjects (v1), ListBuckets, CopyObject, UploadPartCopy, ListParts and
# ListMultipartUploads are not implemented; they answer NotImplemented.
_BUCKET_OPERATIONS: dict[tuple[str, str], Handler] = {
    ("GET", "list-type"): bucket.list_objects_v2,
    ("GET", "location"): bucket.get_bucket_location,
    ("HEAD", ""): bucket.head_bucket,
    ("POST", "delete"): bucket.delete_objects,
}

_OBJECT_OPERATIONS: dict[tuple[str, str], Handler] = {
    ("GET", ""): objects.get_object,
    ("HEAD", ""): objects.head_object,
    ("PUT", ""): objects.put_object,
    ("DELETE", ""): objects.delete_object,
    ("POST", "uploads"): multipart.create_multipart_upload,
    ("PUT", "uploadId"): multipart.upload_part,
    ("POST", "uploadId"): multipart.complete_multipart_upload,
    ("DELETE", "uploadId"): multipart.abort_multipart_upload,
}


class S3Application:
    """A WSGI callable speaking S3 for one bucket, checking SigV4 and per-credential prefixes."""

    def __init__(
        self,
        store: LocalObjectStore,
        bucket: str,
        region: str,
        resolve_credential: CredentialResolver,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.region = region
        self.resolve_credential = resolve_credential

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Answer one HTTP request."""
        request_id = secrets.token_hex(8).upper()
        response = self._respond(environ, request_id)

        headers = [*response.headers, ("x-amz-request-id", request_id)]
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
        logger.debug(
            "%s %s -> %d", environ.get("REQUEST_METHOD"), _resource(environ), response.status
        )
        return response.body

    def _respond(self, environ: dict, request_id: str) -> Response:
        """Run the request's operation, turning every refusal into S3's error answer."""
        try:
            return self._handle(parse_request(environ))
        except S3Error as error:
            return _error_response(error, environ, request_id)
        except Exception as error:
            s3_error = from_store_error(error)
            if s3_error is None:
                logger.exception("S3 request %s failed", request_id)
                s3_error = S3Error("InternalError", "We encountered an internal error.")
            return _error_response(s3_error, environ, request_id)

    def _handle(self, request: S3Request) -> Response:
        """Authenticate the request, then route it to its operation."""
        credential = authenticate(request.signed, self.resolve_credential, self.region)
        bodies.check_payload_hash(request.content_sha256)
        if not request.bucket:
            raise S3Error("NotImplemented", "ListBuckets is not supported.")
        if request.bucket != self.bucket:
            raise S3Error("NoSuchBucket", "The specified bucket does not exist")

        handler = self._route(request)
        return handler(Operation(self.store, request, credential, self.region))

    def _route(self, request: S3Request) -> Handler:
        """Find the handler for the request's method, target and selecting query parameter."""
        selector = next((name for name in _SELECTORS if name in request.query), "")
        operations = _OBJECT_OPERATIONS if request.key else _BUCKET_OPERATIONS
        handler = operations.get((request.method, selector))
        if selector == "list-type" and request.query["list-type"] != "2":
            handler = None
        if handler is None:
            raise S3Error("NotImplemented", "This operation is not supported by this endpoint.")
        return handler


def _error_response(error: S3Error, environ: dict, request_id: str) -> Response:
    """Build S3's error document for a refusal (headers only for HEAD, as S3 does)."""
    resource = _resource(environ)
    if error.code == "IncompleteBody":
        logger.warning("upload to %s ended early; nothing was stored", resource)
    else:
        logger.debug("refused %s: %s", resource, error.code)
    if environ.get("REQUEST_METHOD") == "HEAD":
        return Response(error.status, [("Content-Length", "0")])

    document = documents.new_document("Error", namespaced=False)
    documents.add(document, "Code", error.code)
    documents.add(document, "Message", error.message)
    documents.add(document, "Resource", resource)
    documents.add(document, "RequestId", request_id)
    return xml_response(document, status=error.status)


def _resource(environ: dict) -> str:
    """Return the request's decoded path, for logs and error documents."""
    raw_path = environ.get("REQUEST_URI", "").partition("?")[0]
    return unquote(raw_path) if raw_path else environ.get("PATH_INFO", "")
