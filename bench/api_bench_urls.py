"""URLs for bench/api.py: the whole project plus bare views returning the same JSON (and, as
second references, the same with the round trips or the write any real answer needs)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

# The real endpoint's answer, captured by bench/api.py before the run.
EXPIRATION_BODY = json.loads(os.environ.get("KEYCHEST_BENCH_EXPIRATION_JSON", "{}"))


def bare_expiration(request: HttpRequest, domain: str) -> JsonResponse:
    return JsonResponse(EXPIRATION_BODY)


def bare_io_expiration(request: HttpRequest, domain: str) -> JsonResponse:
    """The bare view plus one Redis command and one PostgreSQL statement (after Django's
    per-request connection health check): what touching the two servers alone costs."""
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


_INSERT: tuple[str, int, int, list[Any]] | None = None


def _insert_template() -> tuple[str, int, int, list[Any]]:
    """The enrolment's INSERT as plain SQL: a server row of the bench team with the columns'
    defaults prepared once; per request only the host and the uuid change."""
    global _INSERT
    if _INSERT is None:
        from django.utils import timezone

        from monitors.models import Server

        team_id = int(os.environ["KEYCHEST_BENCH_TEAM_ID"])
        server = Server(team_id=team_id, host="template.bench.example", port=443, next_scan_at=timezone.now())
        fields = [f for f in Server._meta.local_concrete_fields if f is not Server._meta.pk]
        values = [f.get_db_prep_save(f.pre_save(server, True), connection) for f in fields]
        columns = [f.attname for f in fields]
        quoted = ", ".join(f'"{f.column}"' for f in fields)
        sql = (
            f'INSERT INTO "{Server._meta.db_table}" ({quoted}) '
            f"VALUES ({', '.join(['%s'] * len(fields))}) "
            'ON CONFLICT ("team_id", "host", "port", "protocol") WHERE "removed_at" IS NULL DO NOTHING RETURNING "uuid"'
        )
        _INSERT = (sql, columns.index("host"), columns.index("uuid"), values)
    return _INSERT


@csrf_exempt
def bare_insert_servers_add(request: HttpRequest) -> JsonResponse:
    """The bare view plus the one durable INSERT of the new server row, in plain SQL: the write
    any real enrolment needs, without key, throttling, validation or ORM."""
    domain = request.POST.get("domain", "")
    sql, host_at, uuid_at, template = _insert_template()
    values = list(template)
    values[host_at] = domain
    values[uuid_at] = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    return JsonResponse(
        {
            "status": "success" if row else "already-inserted",
            "id": str(values[uuid_at]),
            "domain": domain,
            "port": 443,
            "pending": False,
        }
    )


class QueryCountMiddleware:
    """Counts the SQL statements of each request into an X-Queries header, and names the
    gunicorn worker that answered in X-Worker."""

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
        response["X-Worker"] = str(os.getpid())
        return response


urlpatterns = [
    path("bare/servers/expiration/<str:domain>", bare_expiration),
    path("bare-io/servers/expiration/<str:domain>", bare_io_expiration),
    path("bare/servers/add", bare_servers_add),
    path("bare-insert/servers/add", bare_insert_servers_add),
    path("", include("keychest.urls")),
]
