"""S3 errors: the codes and statuses clients expect, and the one mapping from store errors."""

from __future__ import annotations

from epic.data import store

# Each S3 error code the endpoint answers with, and its HTTP status as S3 sends it.
STATUS = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "BadDigest": 400,
    "EntityTooLarge": 400,
    "ExpiredToken": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "InvalidToken": 400,
    "InvalidURI": 400,
    "KeyConflict": 409,
    "KeyTooLongError": 400,
    "MalformedXML": 400,
    "MaxMessageLengthExceeded": 400,
    "MetadataTooLarge": 400,
    "MissingContentLength": 411,
    "MethodNotAllowed": 405,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NotImplemented": 501,
    "PreconditionFailed": 412,
    "RequestHeaderSectionTooLarge": 400,
    "RequestTimeTooSkewed": 403,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """A refusal answered with S3's error document; `code` is S3's stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = STATUS[code]


# Store exceptions in the order they are tried (subclasses before their bases).
_STORE_ERRORS = (
    (store.InvalidPartOrder, "InvalidPartOrder"),
    (store.InvalidPart, "InvalidPart"),
    (store.NoSuchUpload, "NoSuchUpload"),
    (store.KeyConflict, "KeyConflict"),
    (store.InvalidKey, "InvalidArgument"),
    (store.DigestMismatch, "XAmzContentSHA256Mismatch"),
    (store.LengthMismatch, "IncompleteBody"),
)


def from_store_error(error: Exception) -> S3Error | None:
    """Translate an exception raised by the object store into an S3 error, if it is one."""
    for error_class, code in _STORE_ERRORS:
        if isinstance(error, error_class):
            return S3Error(code, _message(error))
    return None


def _message(error: Exception) -> str:
    """Return an exception's message without the quotes KeyError adds."""
    if isinstance(error, KeyError) and error.args:
        return f"The specified upload does not exist: {error.args[0]}"
    return str(error)
