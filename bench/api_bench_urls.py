"""URLs for bench/api.py: the whole project plus two bare views returning the same JSON."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

# The real endpoint's answer, captured by bench/api.py before the run.
EXPIRATION_BODY = json.loads(os.environ.get("KEYCHEST_BENCH_EXPIRATION_JSON", "{}"))


def bare_expiration(request: HttpRequest, domain: str) -> JsonResponse:
    return JsonResponse(EXPIRATION_BODY)


def bare_io_expiration(request: HttpRequest, domain: str) -> JsonResponse:
    """The bare view plus the round trips any real answer needs: one Redis command (as the
    throttling counters) and one PostgreSQL statement (with Django's per-request connection
    health check). A second reference: what touching the two servers alone costs."""
    from django.core.cache import cache

    cache.get("bench-io")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return JsonResponse(EXPIRATION_BODY)


@csrf_exempt
def bare_servers_add(request: HttpRequest) -> JsonResponse:
    domain = request.POST.get("domain", "")
    return JsonResponse({"status": "success", "id": str(uuid.uuid4()), "domain": domain, "port": 443, "pending": False})


class QueryCountMiddleware:
    """Counts the SQL statements of each request into an X-Queries header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        count = 0

        def counter(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            nonlocal count
            count += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counter):
            response = self.get_response(request)
        response["X-Queries"] = str(count)
        return response


urlpatterns = [
    path("bare/servers/expiration/<str:domain>", bare_expiration),
    path("bare-io/servers/expiration/<str:domain>", bare_io_expiration),
    path("bare/servers/add", bare_servers_add),
    path("", include("keychest.urls")),
]
