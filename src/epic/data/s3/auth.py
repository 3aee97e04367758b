"""AWS Signature Version 4 verification for the S3 endpoint, as botocore signs requests."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

from epic.data.s3.errors import S3Error

logger = logging.getLogger(__name__)

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW = timedelta(minutes=15)
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
# Headers that must be signed whenever a request carries them, besides every x-amz-* header.
_MUST_SIGN = ("host", "content-md5", "content-type")


@dataclass(frozen=True)
class S3Credential:
    """A data access key: who may sign requests, until when, and which key prefix they reach."""

    access_key_id: str
    secret_key: str
    session_token: str
    prefix: str
    expires_at: datetime


CredentialResolver = Callable[[str], S3Credential | None]


@dataclass(frozen=True)
class Authorization:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


@dataclass(frozen=True)
class SignedRequest:
    """What the signature covers: method, raw path and query, headers (lower-case names)."""

    method: str
    raw_path: str
    query_string: str
    headers: Mapping[str, str]


def authenticate(
    request: SignedRequest,
    resolve: CredentialResolver,
    region: str,
    now: datetime | None = None,
) -> S3Credential:
    """Return the credential that validly signed `request`, or raise the S3 error S3 would."""
    now = now or datetime.now(UTC)
    authorization = parse_authorization(request.headers.get("authorization", ""))
    amz_date = _request_time(request.headers, now)
    _check_scope(authorization, amz_date, region)
    _check_signed_headers(authorization, request.headers)

    credential = resolve(authorization.access_key_id)
    if credential is None:
        raise S3Error(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        )

    _check_signature(request, authorization, credential, amz_date)
    _check_session(request.headers, credential, now)
    return credential


def parse_authorization(value: str) -> Authorization:
    """Split a SigV4 Authorization header into its fields; raise if it is not one."""
    # Limitation: presigned URLs (SigV4 in the query string) are not accepted; every request
    # must carry an Authorization header, as boto3 clients do.
    if not value:
        raise S3Error("AccessDenied", "Anonymous access is not allowed; sign requests with SigV4.")
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise S3Error("InvalidArgument", f"Only {ALGORITHM} authorization is supported.")

    fields = {}
    for item in rest.split(","):
        name, _, field_value = item.strip().partition("=")
        fields[name] = field_value
    try:
        scope = fields["Credential"].split("/")
        access_key_id, date, region, service, terminator = scope
        signed_headers = tuple(fields["SignedHeaders"].split(";"))
        signature = fields["Signature"]
    except (KeyError, ValueError) as error:
        raise _malformed("it needs Credential, SignedHeaders and Signature") from error
    if terminator != "aws4_request" or service != "s3":
        raise _malformed("the credential scope must end in s3/aws4_request")
    return Authorization(access_key_id, date, region, service, signed_headers, signature)


def canonical_request(request: SignedRequest, signed_headers: tuple[str, ...]) -> str:
    """Build SigV4's canonical request: S3 paths are encoded once and never normalised."""
    header_lines = []
    for name in signed_headers:
        value = request.headers.get(name)
        if value is None:
            raise _signature_mismatch()
        header_lines.append(f"{name}:{' '.join(value.split())}\n")

    return "\n".join(
        [
            request.method,
            quote(unquote(request.raw_path), safe="/~"),
            canonical_query(request.query_string),
            "".join(header_lines),
            ";".join(signed_headers),
            request.headers.get("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        ]
    )


def canonical_query(query_string: str) -> str:
    """Sort and re-encode the query parameters as SigV4 prescribes."""
    pairs = []
    for item in query_string.split("&") if query_string else []:
        name, _, value = item.partition("=")
        pairs.append(
            (quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")),
        )
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """Derive SigV4's signing key for one day, region and service."""
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(secret_key: str, authorization: Authorization, amz_date: str, canonical: str) -> str:
    """Compute the hex signature of a canonical request under the header's scope."""
    scope = f"{authorization.date}/{authorization.region}/{authorization.service}/aws4_request"
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"
    key = signing_key(secret_key, authorization.date, authorization.region, authorization.service)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _request_time(headers: Mapping[str, str], now: datetime) -> str:
    """Return the X-Amz-Date value, refusing a missing, malformed or skewed one."""
    amz_date = headers.get("x-amz-date", "")
    # strptime alone would also read a year written in other scripts' digits.
    if not _AMZ_DATE.fullmatch(amz_date):
        raise _invalid_date()
    try:
        moment = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError as error:
        raise _invalid_date() from error
    if abs(now - moment) > MAX_CLOCK_SKEW:
        raise S3Error(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        )
    return amz_date


def _check_scope(authorization: Authorization, amz_date: str, region: str) -> None:
    """Refuse a credential scope for another day or region than the request's."""
    if authorization.date != amz_date[:8]:
        raise _malformed("the credential date does not match x-amz-date")
    if authorization.region != region:
        raise _malformed(f"the region '{authorization.region}' is wrong; expecting '{region}'")


def _check_signed_headers(authorization: Authorization, headers: Mapping[str, str]) -> None:
    """Refuse a request whose signature leaves out headers that must be covered."""
    signed = set(authorization.signed_headers)
    unsigned = [
        name
        for name in headers
        if (name.startswith("x-amz-") or name in _MUST_SIGN) and name not in signed
    ]
    if unsigned or "host" not in signed:
        raise S3Error(
            "AccessDenied",
            "There were headers present in the request which were not signed: "
            + ", ".join(sorted(unsigned) or ["host"]),
        )
    if "x-amz-content-sha256" not in headers:
        raise S3Error("InvalidRequest", "Missing required header: x-amz-content-sha256.")


def _check_signature(
    request: SignedRequest,
    authorization: Authorization,
    credential: S3Credential,
    amz_date: str,
) -> None:
    """Recompute the signature with the credential's secret and compare in constant time."""
    canonical = canonical_request(request, authorization.signed_headers)
    expected = signature(credential.secret_key, authorization, amz_date, canonical)
    if not hmac.compare_digest(expected.encode(), authorization.signature.encode()):
        logger.debug("signature mismatch for key id %s", credential.access_key_id)
        raise _signature_mismatch()


def _check_session(headers: Mapping[str, str], credential: S3Credential, now: datetime) -> None:
    """Refuse a session token other than the credential's, and an expired credential."""
    token = headers.get("x-amz-security-token", "")
    if not hmac.compare_digest(token.encode(), credential.session_token.encode()):
        raise S3Error("InvalidToken", "The provided token is malformed or otherwise invalid.")
    if now >= credential.expires_at:
        raise S3Error("ExpiredToken", "The provided token has expired.")


def _malformed(reason: str) -> S3Error:
    """Build the error for an Authorization header that cannot be understood."""
    return S3Error(
        "AuthorizationHeaderMalformed", f"The authorization header is malformed; {reason}."
    )


def _invalid_date() -> S3Error:
    """Build S3's error for a missing or malformed X-Amz-Date."""
    return S3Error("AccessDenied", "AWS authentication requires a valid x-amz-date header.")


def _signature_mismatch() -> S3Error:
    """Build S3's error for a signature that does not verify."""
    return S3Error(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    )
