"""Pages: the public spot check (no login, rate-limited per IP) and a team's server detail."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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
from keychest.ratelimit import Limit, client_network, hit
from keychest.tenancy import get_for_team_or_404
from monitors.models import Protocol, ScanResult, Server, SpotCheck
from monitors.scanning import ScanConfig
from monitors.services import server_scan_soon
from monitors.spotcheck import spotcheck
from monitors.tasks import scan_server_now

log = logging.getLogger(__name__)


class SpotCheckForm(forms.Form):
    target = forms.CharField(max_length=300, label="Host[:port]")
    protocol = forms.ChoiceField(
        choices=[("", "Implicit TLS (or by port)"), *[(p.value, p.label) for p in Protocol if p != Protocol.TLS]],
        required=False,
        label="STARTTLS",
    )


class _Slots:
    """Public spot checks running now in this web process (each holds a web thread, bounded)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0

    @contextmanager
    def take(self, limit: int) -> Iterator[bool]:
        with self.lock:
            taken = self.running < limit
            self.running += taken
        try:
            yield taken
        finally:
            with self.lock:
                self.running -= taken


_slots = _Slots()
BUSY_RETRY_SECONDS = 5


def public_spotcheck_config() -> ScanConfig:
    """A public spot check's bounds: at most ~2.5 s of DNS, the spot-check deadline per address
    (its probes run side by side), then at most 3 s of HSTS."""
    deadline = min(float(settings.KEYCHEST_SPOTCHECK_DEADLINE), float(settings.KEYCHEST_SCAN_DEADLINE))
    config = ScanConfig.from_settings()
    return dataclasses.replace(
        config,
        deadline=deadline,
        connect_timeout=min(config.connect_timeout, deadline),
        dns_timeout=min(config.dns_timeout, 2.0),
    )


def _refused(request: HttpRequest, form: SpotCheckForm, message: str, status: int, retry: int) -> HttpResponse:
    form.add_error(None, message)
    response = render(request, "monitors/spotcheck.html", {"form": form}, status=status)
    response["Retry-After"] = str(retry)
    return response


def spotcheck_form(request: HttpRequest) -> HttpResponse:
    form = SpotCheckForm(request.POST or None)
    if request.method != "POST":
        return render(request, "monitors/spotcheck.html", {"form": form})
    if not form.is_valid():
        return render(request, "monitors/spotcheck.html", {"form": form}, status=400)
    client = client_network(request)  # an IPv6 client is its /64
    per_minute = hit(Limit("spotcheck-minute", settings.KEYCHEST_SPOTCHECK_RATE, 60), client)
    per_day = hit(Limit("spotcheck-day", settings.KEYCHEST_SPOTCHECK_RATE * 50, 86400), client)
    if not (per_minute.allowed and per_day.allowed):
        retry = per_minute.retry_after if not per_minute.allowed else per_day.retry_after
        return _refused(
            request, form, f"Too many spot checks from your address; try again in {retry} seconds.", 429, retry
        )
    with _slots.take(settings.KEYCHEST_SPOTCHECK_CONCURRENCY) as taken:
        if not taken:
            message = f"Too many spot checks are running; try again in {BUSY_RETRY_SECONDS} seconds."
            return _refused(request, form, message, 503, BUSY_RETRY_SECONDS)
        try:
            result = spotcheck(
                target=form.cleaned_data["target"],
                protocol=form.cleaned_data["protocol"] or None,
                config=public_spotcheck_config(),
            )
        except InvalidTarget as exc:
            form.add_error("target", str(exc))
            return render(request, "monitors/spotcheck.html", {"form": form}, status=400)
    check = SpotCheck.objects.create(
        host=result.host, port=result.port, protocol=result.protocol, result=result.as_dict()
    )
    return redirect("spotcheck_result", check_id=check.uuid)


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
    if server.agent is not None:
        # The SaaS never connects to an agent's server: the agent takes it at its next call.
        messages.success(
            request,
            f"{server.label} is scanned by agent {server.agent.name}: it will be scanned at the "
            f"agent's next call (every {server.agent.cadence} s).",
        )
        return redirect("server_detail", server_id=server.uuid)

    def enqueue() -> None:

        try:
            scan_server_now.delay(server.pk)
        except Exception:  # noqa: BLE001 - broker down: the server is due, beat picks it up
            log.warning("could not queue a scan of server %s; beat will pick it up", server.pk)

    transaction.on_commit(enqueue)
    messages.success(request, f"{server.label} will be scanned in a moment.")
    return redirect("server_detail", server_id=server.uuid)
