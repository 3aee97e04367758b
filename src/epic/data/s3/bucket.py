"""Bucket operations: ListObjectsV2, DeleteObjects, HeadBucket and GetBucketLocation."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from epic.data import store
from epic.data.s3 import bodies, documents
from epic.data.s3.errors import S3Error, from_store_error
from epic.data.s3.objects import quote_etag
from epic.data.s3.request import Operation, Response, parse_decimal, xml_response

MAX_KEYS = 1000


@dataclass(frozen=True)
class ListParameters:
    """The query parameters of a ListObjectsV2 request."""

    prefix: str
    delimiter: str
    max_keys: int
    start_after: str
    continuation_token: str
    url_encoded: bool

    @classmethod
    def from_query(cls, query: dict[str, str]) -> ListParameters:
        """Read and check the parameters; max-keys defaults to, and is capped at, 1000."""
        max_keys = parse_decimal(query.get("max-keys", str(MAX_KEYS)))
        if max_keys is None:
            raise S3Error("InvalidArgument", "max-keys must be a non-negative integer.")
        encoding = query.get("encoding-type", "")
        if encoding not in ("", "url"):
            raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request")
        return cls(
            prefix=query.get("prefix", ""),
            delimiter=query.get("delimiter", ""),
            max_keys=min(max_keys, MAX_KEYS),
            start_after=query.get("start-after", ""),
            continuation_token=query.get("continuation-token", ""),
            url_encoded=encoding == "url",
        )

    @property
    def resume_after(self) -> str:
        """The last key or common prefix a previous page returned, from the continuation token."""
        if not self.continuation_token:
            return ""
        try:
            return base64.urlsafe_b64decode(self.continuation_token.encode()).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError) as error:
            raise S3Error(
                "InvalidArgument", "The continuation token provided is incorrect"
            ) from error


def list_objects_v2(operation: Operation) -> Response:
    """List one page of keys under a prefix the credential may reach."""
    parameters = ListParameters.from_query(operation.request.query)
    operation.authorise(parameters.prefix)

    items, truncated = _page(operation.store, parameters)
    document = _list_document(operation.request.bucket, parameters, items, truncated)
    return xml_response(document)


def delete_objects(operation: Operation) -> Response:
    """Delete up to 1000 keys named in an XML body, reporting a refusal per key."""
    request = operation.request
    body = bodies.read_small_body(
        request.body, request.headers, documents.MAX_DOCUMENT_BYTES, request.content_sha256
    )
    root = documents.parse(body, "Delete")
    quiet = (documents.child_text(root, "Quiet") or "").strip().lower() == "true"
    keys = [documents.child_text(entry, "Key") for entry in root.findall("Object")]
    if not keys or len(keys) > MAX_KEYS or None in keys:
        raise S3Error("MalformedXML", "The XML you provided did not name 1 to 1000 keys.")

    result = documents.new_document("DeleteResult")
    for key in keys:
        refusal = _delete_one(operation, key)
        if refusal is not None:
            _add_delete_error(result, key, refusal)
        elif not quiet:
            documents.add(documents.add(result, "Deleted"), "Key", key)
    return xml_response(result)


def head_bucket(operation: Operation) -> Response:
    """Confirm the bucket exists and say where."""
    return Response(200, [("x-amz-bucket-region", operation.region), ("Content-Length", "0")])


def get_bucket_location(operation: Operation) -> Response:
    """Name the bucket's region; S3 leaves it empty for us-east-1."""
    document = documents.new_document("LocationConstraint")
    if operation.region != "us-east-1":
        document.text = operation.region
    return xml_response(document)


def _page(
    object_store: store.LocalObjectStore, parameters: ListParameters
) -> tuple[list[store.ObjectInfo | str], bool]:
    """Collect up to max-keys objects and common prefixes; say whether more remain."""
    resume_after = parameters.resume_after
    start_after = max(parameters.start_after, resume_after)
    listing = _listing(object_store, parameters.prefix, parameters.delimiter, start_after)

    items: list[store.ObjectInfo | str] = []
    for item in listing:
        # The common prefix a previous page ended on comes round again; it was already sent.
        if resume_after and item == resume_after:
            continue
        if len(items) >= parameters.max_keys:
            return items, parameters.max_keys > 0
        items.append(item)
    return items, False


def _listing(
    object_store: store.LocalObjectStore, prefix: str, delimiter: str, start_after: str
) -> Iterator[store.ObjectInfo | str]:
    """Yield objects and, with a delimiter, common prefixes (strings) in key order."""
    if delimiter == "/":
        yield from object_store.list_folder(prefix, start_after)
        return
    last_common = None
    for info in object_store.list(prefix, start_after):
        cut = info.key.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            yield info
            continue
        common = info.key[: cut + len(delimiter)]
        if common != last_common:
            last_common = common
            yield common


def _list_document(
    bucket: str,
    parameters: ListParameters,
    items: list[store.ObjectInfo | str],
    truncated: bool,
) -> documents.ElementTree.Element:
    """Build the ListBucketResult document boto3 parses."""
    encode = _url_encoder(parameters.url_encoded)
    root = documents.new_document("ListBucketResult")
    documents.add(root, "Name", bucket)
    documents.add(root, "Prefix", encode(parameters.prefix))
    if parameters.delimiter:
        documents.add(root, "Delimiter", encode(parameters.delimiter))
    documents.add(root, "MaxKeys", parameters.max_keys)
    if parameters.url_encoded:
        documents.add(root, "EncodingType", "url")
    documents.add(root, "KeyCount", len(items))
    documents.add(root, "IsTruncated", "true" if truncated else "false")
    _add_paging(root, parameters, items, truncated, encode)

    for info in (item for item in items if isinstance(item, store.ObjectInfo)):
        _add_contents(root, info, encode)
    for common in (item for item in items if isinstance(item, str)):
        documents.add(documents.add(root, "CommonPrefixes"), "Prefix", encode(common))
    return root


def _add_paging(root, parameters, items, truncated, encode) -> None:
    """Add the continuation and start-after elements of a listing page."""
    if parameters.continuation_token:
        documents.add(root, "ContinuationToken", parameters.continuation_token)
    if truncated:
        last = items[-1] if isinstance(items[-1], str) else items[-1].key
        token = base64.urlsafe_b64encode(last.encode()).decode()
        documents.add(root, "NextContinuationToken", token)
    if parameters.start_after:
        documents.add(root, "StartAfter", encode(parameters.start_after))


def _add_contents(root, info: store.ObjectInfo, encode) -> None:
    """Add one object's Contents element."""
    contents = documents.add(root, "Contents")
    documents.add(contents, "Key", encode(info.key))
    documents.add(contents, "LastModified", documents.xml_timestamp(info.last_modified))
    documents.add(contents, "ETag", quote_etag(info.etag))
    documents.add(contents, "Size", info.size)
    documents.add(contents, "StorageClass", "STANDARD")


def _url_encoder(enabled: bool):
    """Return how keys are written: URL-encoded when encoding-type=url (boto3 asks so) or not."""
    if not enabled:
        return lambda text: text
    return lambda text: quote(text, safe="/")


def _delete_one(operation: Operation, key: str) -> S3Error | None:
    """Delete one key of a DeleteObjects request; return the refusal instead of raising it."""
    try:
        operation.authorise(key)
        operation.store.delete(key)
    except S3Error as error:
        return error
    except (store.InvalidKey, store.KeyConflict) as error:
        return from_store_error(error)
    return None


def _add_delete_error(result, key: str, refusal: S3Error) -> None:
    """Add one key's Error element to a DeleteResult."""
    error = documents.add(result, "Error")
    documents.add(error, "Key", key)
    documents.add(error, "Code", refusal.code)
    documents.add(error, "Message", refusal.message)
