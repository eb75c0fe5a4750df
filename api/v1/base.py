"""What every /api/v1 view shares: authentication (key or CSRF-checked session), scopes,
throttling, cursor pagination, ordering and the error body."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions, filters
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.pagination import BasePagination, CursorPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from api.access import ApiKeyAuthentication, ApiThrottle, Caller, ScopePermission, caller_of
from api.errors import v1_exception_handler


class Cursor(CursorPagination):
    """Opaque cursors: stable under inserts, constant cost per page however deep."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = ("-created_at", "-id")


class V1Mixin(APIView):
    """Put first in the bases: `class ServerViewSet(V1Mixin, viewsets.ModelViewSet)`."""

    # The browser's session, with DRF's CSRF check on unsafe methods, or an API key.
    authentication_classes: Sequence[type[BaseAuthentication]] = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes: Sequence[type[BasePermission]] = [ScopePermission]
    throttle_classes: Sequence[type[BaseThrottle]] = [ApiThrottle]
    pagination_class: type[BasePagination] | None = Cursor
    filter_backends: Sequence[type[Any]] = [filters.OrderingFilter]

    def get_exception_handler(self) -> Any:
        return v1_exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # PostgreSQL text cannot hold NUL: a filter value with one would fail in the database.
        if any("\x00" in name or "\x00" in value for name, value in request.query_params.items()):
            raise exceptions.ValidationError({"query": "parameters must not contain NUL characters"})

    @property
    def caller(self) -> Caller:
        caller = caller_of(self.request)
        if caller is None:  # ScopePermission ran first; this is only for the type checker
            raise exceptions.NotAuthenticated()
        return caller


def bool_param(request: Request, name: str) -> bool | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise exceptions.ValidationError({name: "must be true or false"})


def datetime_param(request: Request, name: str) -> datetime | None:
    """An ISO 8601 query parameter as an aware datetime in UTC (naive means UTC), or a 400.
    In UTC because PostgreSQL refuses offsets beyond ±15:59 that ISO 8601 parsing accepts."""
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise exceptions.ValidationError({name: "an ISO 8601 date-time, e.g. 2026-05-01T00:00:00Z"})
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed.astimezone(UTC)
