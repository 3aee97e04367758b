"""Multipart upload operations: create, upload a part, complete and abort."""

from __future__ import annotations

from epic.data import store
from epic.data.s3 import bodies, documents
from epic.data.s3.errors import S3Error
from epic.data.s3.objects import MAX_OBJECT_BYTES, quote_etag, user_metadata
from epic.data.s3.request import Operation, Response, parse_decimal, xml_response


def create_multipart_upload(operation: Operation) -> Response:
    """Start a multipart upload and hand back its id."""
    key = operation.object_key()
    metadata = user_metadata(operation.request.headers)
    upload_id = operation.store.create_multipart(key, metadata)

    document = documents.new_document("InitiateMultipartUploadResult")
    documents.add(document, "Bucket", operation.request.bucket)
    documents.add(document, "Key", key)
    documents.add(document, "UploadId", upload_id)
    return xml_response(document)


def upload_part(operation: Operation) -> Response:
    """Store one part of a multipart upload from the request body."""
    upload_id = _upload_of(operation)
    request = operation.request
    if "x-amz-copy-source" in request.headers:
        raise S3Error("NotImplemented", "UploadPartCopy is not supported.")
    part_number = _part_number(request.query.get("partNumber", ""))

    body = bodies.object_body(
        request.body, request.headers, MAX_OBJECT_BYTES, request.content_sha256
    )
    etag = operation.store.put_part(upload_id, part_number, body.stream, body.sha256, body.length)
    return Response(200, [("ETag", quote_etag(etag)), ("Content-Length", "0")])


def complete_multipart_upload(operation: Operation) -> Response:
    """Join the parts the XML body lists into the object."""
    upload_id = _upload_of(operation)
    request = operation.request
    body = bodies.read_small_body(
        request.body, request.headers, documents.MAX_DOCUMENT_BYTES, request.content_sha256
    )
    parts = _listed_parts(documents.parse(body, "CompleteMultipartUpload"))
    info = operation.store.complete_multipart(upload_id, parts)

    document = documents.new_document("CompleteMultipartUploadResult")
    documents.add(document, "Location", f"/{request.bucket}/{info.key}")
    documents.add(document, "Bucket", request.bucket)
    documents.add(document, "Key", info.key)
    documents.add(document, "ETag", quote_etag(info.etag))
    return xml_response(document)


def abort_multipart_upload(operation: Operation) -> Response:
    """Discard a multipart upload and its parts."""
    operation.store.abort_multipart(_upload_of(operation))
    return Response(204)


def _upload_of(operation: Operation) -> str:
    """Return the request's upload id once it is known to belong to the request's key."""
    key = operation.object_key()
    upload_id = operation.request.query.get("uploadId", "")
    if operation.store.upload_key(upload_id) != key:
        raise store.NoSuchUpload(upload_id)
    return upload_id


def _part_number(value: str) -> int:
    """Parse a partNumber query parameter, which S3 allows from 1 to 10000."""
    number = parse_decimal(value)
    if number is None or not 1 <= number <= store.MAX_PART_NUMBER:
        raise S3Error(
            "InvalidArgument",
            f"Part number must be an integer between 1 and {store.MAX_PART_NUMBER}, inclusive",
        )
    return number


def _listed_parts(root: documents.ElementTree.Element) -> list[tuple[int, str]]:
    """Read the (PartNumber, ETag) pairs of a CompleteMultipartUpload document."""
    parts = []
    for part in root.findall("Part"):
        number = parse_decimal((documents.child_text(part, "PartNumber") or "").strip())
        etag = documents.child_text(part, "ETag")
        if number is None or etag is None:
            raise S3Error("MalformedXML", "Each Part needs a PartNumber and an ETag.")
        if not 1 <= number <= store.MAX_PART_NUMBER:
            raise S3Error("InvalidPart", f"Part numbers run from 1 to {store.MAX_PART_NUMBER}.")
        parts.append((number, etag))
    return parts
