"""The internal step I/O endpoint that compute nodes call; not part of the EPIC API.

The first request (PUT scheduler-job/) carries `Authorization: Bearer <bootstrap token>` and is
answered with the step's session secret; every later one carries `Bearer <session secret>`.
Every answer comes in DRF's error shape.
Bodies are raw bytes, bounded per request: the server's own request body limit applies too.
"""

from __future__ import annotations

import json
import re

from django.http import StreamingHttpResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from epic.api.exceptions import RequestTooLarge
from epic.compute.remote import LOG_FILES
from epic.worker import stepio

TAR_TYPE = "application/x-tar"
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
OFFSET_PATTERN = re.compile(r"[0-9]{1,15}")
NUMBER_PATTERN = re.compile(r"[0-9]{1,20}")
# Exit codes as a shell reports them: 0 to 255 (128 + N for signal N).
MAX_EXIT_CODE = 255


class StepIOView(APIView):
    """The step named in the URL, once its token is checked and while it runs."""

    authentication_classes = []
    permission_classes = []
    parser_classes = []
    # Internal: left out of the OpenAPI document.
    schema = None

    def initial(self, request, *args, **kwargs):
        """Check the step's credential before any handler runs."""
        super().initial(request, *args, **kwargs)
        self.step = self.authorise(kwargs["step_id"], request.headers.get("Authorization", ""))

    def authorise(self, step_id: int, authorization: str) -> stepio.StepFolders:
        """The step, provided the session secret is its own and it runs."""
        return stepio.running_step(step_id, authorization)


class ChangeView(StepIOView):
    """A request that changes what the server holds of the step: refused once it ended."""

    def authorise(self, step_id: int, authorization: str) -> stepio.StepFolders:
        """The running step of the session secret, provided its exit code is not recorded."""
        step = super().authorise(step_id, authorization)
        if self.request.method != "GET":
            stepio.refuse_after_exit(step)
        return step


class SchedulerJobView(StepIOView):
    """PUT: the node's first contact, naming its Slurm job and spending the bootstrap token."""

    def authorise(self, step_id: int, authorization: str) -> stepio.StepFolders:
        """The step of the bootstrap token, in whatever state: the exchange checks it."""
        return stepio.step_for_bootstrap(step_id, authorization)

    def put(self, request, step_id: int):
        """Exchange the bootstrap token for the session secret, sent in the answer."""
        secret = stepio.open_session(self.step, _positive_number(request, "scheduler_job"))
        return Response({"session": secret})


class BundleView(StepIOView):
    """GET: what the node needs to run the step, as a tar."""

    def get(self, request, step_id: int):
        """Stream the bundle."""
        return StreamingHttpResponse(stepio.bundle_archive(self.step), content_type=TAR_TYPE)


class CaseView(ChangeView):
    """GET: the job's case folder as a tar. PUT: swap in the archive sent in parts."""

    def get(self, request, step_id: int):
        """Stream the case folder."""
        return StreamingHttpResponse(stepio.case_archive(self.step), content_type=TAR_TYPE)

    def put(self, request, step_id: int):
        """Commit the received archive, described by its size and SHA-256 digest."""
        size, sha256 = _archive_description(request)
        stepio.commit_case(self.step, size, sha256)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CasePartView(ChangeView):
    """POST: one part of the case archive at its offset."""

    def post(self, request, step_id: int):
        """Append the part; answer the size received so far."""
        data = _body(request, stepio.CASE_PART_MAX_BYTES)
        return _appended(stepio.append_case_part, self.step, _offset(request), data)


class LogView(ChangeView):
    """POST: new bytes of one of the step's log streams, at their offset."""

    def post(self, request, step_id: int, stream: str):
        """Append the bytes; answer the size the server holds."""
        if stream not in LOG_FILES:
            raise exceptions.NotFound(f"No log stream {stream!r}.")
        data = _body(request, stepio.LOG_PART_MAX_BYTES)
        return _appended(stepio.append_log, self.step, stream, _offset(request), data)


class ExitView(StepIOView):
    """PUT: the step's exit code, the node's last request."""

    def authorise(self, step_id: int, authorization: str) -> stepio.StepFolders:
        """Any state of a valid session's step: a retried last request may find it ended."""
        return stepio.step_for_session(step_id, authorization)

    def put(self, request, step_id: int):
        """Record the exit code; repeating it changes nothing, changing it is refused."""
        code = _number(request, "exit_code")
        if code > MAX_EXIT_CODE:
            raise exceptions.ValidationError({"exit_code": [f"At most {MAX_EXIT_CODE}."]})
        stepio.write_exit_code(self.step, code)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _appended(append, *arguments) -> Response:
    """The size held after an append; a gap answers 409 with that size, to resume from."""
    try:
        size = append(*arguments)
    except stepio.OffsetGap as gap:
        body = {"detail": str(gap.detail), "code": gap.default_code, "size": gap.size}
        return Response(body, status=gap.status_code)
    return Response({"size": size})


# Request bodies


def _body(request, limit: int) -> bytes:
    """The raw request body, refused with 413 beyond `limit` bytes."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError as error:
        raise exceptions.ParseError("Invalid Content-Length.") from error
    if length < 0:
        raise exceptions.ParseError("Invalid Content-Length.")
    if length > limit:
        raise RequestTooLarge(f"At most {limit} bytes per request.")
    stream, data = request.stream, bytearray()
    while stream is not None and len(data) < length:
        chunk = stream.read(length - len(data))
        if not chunk:
            raise exceptions.ParseError("The request body ended early.")
        data += chunk
    return bytes(data)


def _number(request, field: str) -> int:
    """A body holding one non-negative decimal number."""
    text = _body(request, stepio.VALUE_MAX_BYTES).strip()
    if not NUMBER_PATTERN.fullmatch(text.decode("latin-1")):
        raise exceptions.ValidationError({field: ["A non-negative whole number is required."]})
    return int(text)


def _positive_number(request, field: str) -> int:
    """A body holding one decimal number above zero."""
    number = _number(request, field)
    if number == 0:
        raise exceptions.ValidationError({field: ["Must be above zero."]})
    return number


def _offset(request) -> int:
    """The `offset` query parameter: where in the stream the body's first byte goes."""
    text = request.query_params.get("offset", "")
    if not OFFSET_PATTERN.fullmatch(text):
        raise exceptions.ValidationError({"offset": ["A non-negative whole number is required."]})
    return int(text)


def _archive_description(request) -> tuple[int, str]:
    """The size and SHA-256 digest of the case archive, from a small JSON body."""
    try:
        description = json.loads(_body(request, stepio.VALUE_MAX_BYTES))
        size, sha256 = description["size"], description["sha256"]
    except (ValueError, TypeError, KeyError) as error:
        raise exceptions.ValidationError(
            {"case": ['A JSON object {"size": bytes, "sha256": hex digest} is required.']}
        ) from error
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise exceptions.ValidationError({"size": ["A non-negative whole number is required."]})
    if not isinstance(sha256, str) or not SHA256_PATTERN.fullmatch(sha256):
        raise exceptions.ValidationError({"sha256": ["64 lowercase hex digits are required."]})
    return size, sha256
