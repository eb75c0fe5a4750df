"""Consistent error bodies.

/api/v1:   {"error": "<code>", "detail": "<message>"} (+ "fields" for invalid input), and a
           Retry-After header on 429.
/api/v1.0: {"status": "<status>", "detail": "<message>"} with the statuses existing scripts
           already understand (`not-registered`, `not-allowed`, `too-many`, ...).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import bad_request, page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


def _code_of(exc: exceptions.APIException) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "invalid"
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return exc.default_code


def _message_of(exc: exceptions.APIException) -> str:
    detail = exc.detail
    if isinstance(detail, str):
        return str(detail)
    if isinstance(exc, exceptions.ValidationError):
        return "Invalid input."
    return str(exc.default_detail)


def v1_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    assert isinstance(exc, exceptions.APIException)
    body: dict[str, Any] = {"error": _code_of(exc).replace("_", "-"), "detail": _message_of(exc)}
    if isinstance(exc, exceptions.ValidationError):
        body["fields"] = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    response.data = body
    return response


V10_STATUS = {
    status.HTTP_401_UNAUTHORIZED: "not-registered",
    status.HTTP_403_FORBIDDEN: "not-allowed",
    status.HTTP_404_NOT_FOUND: "not-found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "not-allowed",
    status.HTTP_429_TOO_MANY_REQUESTS: "too-many",
}


def v10_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None
    message = ""
    if isinstance(exc, exceptions.APIException):
        message = _message_of(exc)
    response.data = {"status": V10_STATUS.get(response.status_code, "invalid-request"), "detail": message}
    return response


def _api_error(request: HttpRequest, status_code: int, code: str, detail: str) -> HttpResponse | None:
    if request.path.startswith("/api/v1.0/"):
        return JsonResponse(
            {"status": V10_STATUS.get(status_code, "invalid-request"), "detail": detail}, status=status_code
        )
    if request.path.startswith("/api/"):
        return JsonResponse({"error": code, "detail": detail}, status=status_code)
    return None


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The site's 404 (handler404): a path under /api/ that matches no route (a malformed id, a
    typo) answers in the API's JSON shape, as its views do; every other path gets the page."""
    return _api_error(request, 404, "not-found", "Not found.") or page_not_found(request, exception)


def malformed(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The site's 400 (handler400) for requests Django refuses before any view (a body it cannot
    parse, too many fields): JSON under /api/, the page elsewhere."""
    return _api_error(request, 400, "invalid", "Malformed request.") or bad_request(request, exception)
