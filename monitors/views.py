"""Pages: the public spot check (no login, rate-limited per IP) and a team's server detail."""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from certificates.models import Certificate
from kcproto.checks import CODES
from kcproto.targets import InvalidTarget
from keychest.accounts.decorators import team_required
from keychest.accounts.models import Role
from keychest.accounts.types import TeamRequest
from keychest.ratelimit import Limit, client_ip, hit
from keychest.tenancy import get_for_team_or_404
from monitors.models import Protocol, ScanResult, Server, SpotCheck
from monitors.services import server_scan_soon
from monitors.spotcheck import spotcheck

log = logging.getLogger(__name__)


class SpotCheckForm(forms.Form):
    target = forms.CharField(max_length=300, label="Host[:port]")
    protocol = forms.ChoiceField(
        choices=[("", "Implicit TLS (or by port)"), *[(p.value, p.label) for p in Protocol if p != Protocol.TLS]],
        required=False,
        label="STARTTLS",
    )


def spotcheck_form(request: HttpRequest) -> HttpResponse:
    form = SpotCheckForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        per_minute = hit(Limit("spotcheck-minute", settings.KEYCHEST_SPOTCHECK_RATE, 60), client_ip(request))
        per_day = hit(Limit("spotcheck-day", settings.KEYCHEST_SPOTCHECK_RATE * 50, 86400), client_ip(request))
        if not (per_minute.allowed and per_day.allowed):
            retry = per_minute.retry_after if not per_minute.allowed else per_day.retry_after
            form.add_error(None, f"Too many spot checks from your address; try again in {retry} seconds.")
            response = render(request, "monitors/spotcheck.html", {"form": form}, status=429)
            response["Retry-After"] = str(retry)
            return response
        try:
            result = spotcheck(target=form.cleaned_data["target"], protocol=form.cleaned_data["protocol"] or None)
        except InvalidTarget as exc:
            form.add_error("target", str(exc))
            status = 400
        else:
            check = SpotCheck.objects.create(
                host=result["host"], port=result["port"], protocol=result["protocol"], result=result
            )
            return redirect("spotcheck_result", check_id=check.uuid)
    elif request.method == "POST":
        status = 400
    return render(request, "monitors/spotcheck.html", {"form": form}, status=status)


def _result_context(result: dict[str, Any]) -> dict[str, Any]:
    findings = result.get("findings", [])
    worst = findings[0]["severity"] if findings else "ok"
    return {"result": result, "findings": findings, "worst": worst}


def spotcheck_result(request: HttpRequest, check_id: str) -> HttpResponse:
    check = get_object_or_404(SpotCheck, uuid=check_id)
    context = _result_context(check.result)
    context.update({"check": check, "form": SpotCheckForm(initial={"target": f"{check.host}:{check.port}"})})
    return render(request, "monitors/spotcheck_result.html", context)


@team_required(Role.VIEWER)
def server_detail(request: TeamRequest, server_id: str) -> HttpResponse:
    server = get_for_team_or_404(Server, request.team, server_id)
    now = timezone.now()
    results = list(ScanResult.objects.filter(server=server, current=True).order_by("address"))
    shas = {sha for r in results for sha in r.chain_sha256}
    certificates = {c.sha256: c for c in Certificate.objects.filter(sha256__in=shas).defer("der")}
    due, overdue = server.thresholds()
    addresses = []
    for result in results:
        addresses.append(
            {
                "result": result,
                "chain": [certificates[sha] for sha in result.chain_sha256 if sha in certificates],
                "days_left": result.days_left(now),
                "renewal": result.renewal_state(now, due=due, overdue=overdue),
            }
        )
    findings = list(server.findings.filter(resolved_at=None).order_by("severity", "code", "address"))
    resolved = list(server.findings.exclude(resolved_at=None).order_by("-resolved_at")[:20])
    timeline = list(server.timeline.order_by("-at", "-id")[:50])
    return render(
        request,
        "monitors/server_detail.html",
        {
            "server": server,
            "addresses": addresses,
            "findings": findings,
            "resolved": resolved,
            "timeline": timeline,
            "codes": CODES,
            "can_scan": request.membership.has_role(Role.MEMBER),
        },
    )


@require_POST
@team_required(Role.MEMBER)
def server_scan(request: TeamRequest, server_id: str) -> HttpResponse:
    server = get_for_team_or_404(Server, request.team, server_id)
    if server.removed_at is not None:
        messages.error(request, "This server is no longer watched.")
        return redirect("server_detail", server_id=server.uuid)
    server_scan_soon(server=server)

    def enqueue() -> None:
        from monitors.tasks import scan_server_now

        try:
            scan_server_now.delay(server.pk)
        except Exception:  # noqa: BLE001 - broker down: the server is due, beat picks it up
            log.warning("could not queue a scan of server %s; beat will pick it up", server.pk)

    transaction.on_commit(enqueue)
    messages.success(request, f"{server.label} will be scanned in a moment.")
    return redirect("server_detail", server_id=server.uuid)
