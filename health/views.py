"""The operators' status: `/status.json` for probes, `/status/` for staff."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from health.checks import Status, system_status, worst


def _token_ok(request: HttpRequest) -> bool:
    expected = settings.KEYCHEST_STATUS_TOKEN
    header = request.headers.get("Authorization", "")
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), expected.encode())


def _staff(request: HttpRequest) -> bool:
    return bool(request.user.is_authenticated and request.user.is_staff)


@never_cache
def status_json(request: HttpRequest) -> JsonResponse:
    """Every check with its status; HTTP 503 when any fails, so a plain HTTP probe can alert."""
    if not (_staff(request) or _token_ok(request)):
        response = JsonResponse(
            {"error": "not-allowed", "detail": "A staff session or the status token is required."}, status=401
        )
        response["WWW-Authenticate"] = 'Bearer realm="keychest-status"'
        return response
    now = timezone.now()
    checks = system_status(now)
    overall = worst([c.status for c in checks])
    return JsonResponse(
        {"status": str(overall), "checked_at": now.isoformat(), "checks": [c.as_dict() for c in checks]},
        status=503 if overall is Status.FAIL else 200,
    )


@never_cache
def status_page(request: HttpRequest) -> HttpResponse:
    if not _staff(request):
        raise Http404
    now = timezone.now()
    checks = system_status(now)
    return render(
        request,
        "health/status.html",
        {"checks": checks, "overall": worst([c.status for c in checks]), "checked_at": now},
    )
