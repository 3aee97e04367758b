"""DRF's error contract, mapped in one place for every endpoint."""

import logging

from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
)
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    """The request is valid but the object's current state does not allow it."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's current state does not allow this."
    default_code = "conflict"


class RequestTooLarge(exceptions.APIException):
    """The request body is larger than the API accepts."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def exception_handler(exc, context) -> Response | None:
    """Answer every error in DRF's shape: field errors keyed by field, otherwise `detail`."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    elif isinstance(exc, TooManyFieldsSent):
        exc = exceptions.ParseError("The request has too many parameters.")
    elif isinstance(exc, SuspiciousOperation):
        logger.warning("Refused a malformed request: %s", exc)
        exc = exceptions.ParseError("The request is malformed.")

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        return Response(
            {"detail": "Internal server error.", "code": "server_error"},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    if isinstance(response.data, dict) and "detail" in response.data:
        response.data["code"] = getattr(exc, "default_code", "error")
        if isinstance(exc.detail, exceptions.ErrorDetail):
            response.data["code"] = exc.detail.code
    return response


def not_found(request, exception=None) -> JsonResponse:
    """A JSON 404 for URLs no endpoint answers."""
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


def server_error(request) -> JsonResponse:
    """A JSON 500 for errors raised outside DRF's views."""
    return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)
