"""The heartbeat (beat → broker → worker → database) and the canary scan."""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Any

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from health.checks import CANARY, PIPELINE
from health.models import Heartbeat
from kcproto.targets import InvalidTarget
from monitors.spotcheck import spotcheck

BAD_SEVERITIES = {"error", "critical"}


def canary_scan(now: datetime | None = None) -> Heartbeat:
    """Scan the canary target through the real scanner and record what it saw.

    The canary is a server the operator knows is healthy: if the scanner stops seeing a valid
    certificate there (resolver broken, outbound network cut, trust store gone), every team's
    results are suspect, and the status says so."""
    now = now or timezone.now()
    target = settings.KEYCHEST_CANARY_TARGET
    ca_pem = ""
    details: dict[str, Any]
    if settings.KEYCHEST_CANARY_CA_FILE:
        with open(settings.KEYCHEST_CANARY_CA_FILE, encoding="ascii") as handle:
            ca_pem = handle.read()
    try:
        result = spotcheck(target=target, ca_pem=ca_pem, now=now, check_hsts=False)
    except InvalidTarget as error:
        ok, summary, details = False, f"The canary target {target!r} is not valid: {error}", {}
    else:
        ok, summary, details = _judge(target, result.as_dict())
    beat, _ = Heartbeat.objects.update_or_create(
        name=CANARY, defaults={"at": now, "ok": ok, "summary": summary[:500], "details": details}
    )
    return beat


def _judge(target: str, result: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
    addresses = [a for a in result["addresses"] if not a["error_code"]]
    bad = [f for f in result["findings"] if f["severity"] in BAD_SEVERITIES]
    details = {
        "addresses": len(result["addresses"]),
        "answered": len(addresses),
        "findings": [f["code"] for f in result["findings"]],
    }
    if bad:
        return False, f"Canary {target}: {bad[0]['message']}", details
    if not addresses:
        return False, f"Canary {target}: no address answered", details
    leaf = addresses[0]["chain"][0] if addresses[0]["chain"] else None
    expiry = f", certificate valid until {leaf['not_after'][:10]}" if leaf else ""
    return True, f"Canary {target}: {len(addresses)} addresses answered with a trusted chain{expiry}", details


# The registered name is fixed, so beat entries and queued messages keep working wherever the
# module lives (issue 20 moves it to health/).
@shared_task(name="keychest.health.tasks.heartbeat_task", ignore_result=True)
def heartbeat_task() -> None:
    """Beat, every minute. Its own write proves the whole pipeline; the canary runs when due."""
    now = timezone.now()
    Heartbeat.objects.update_or_create(
        name=PIPELINE, defaults={"at": now, "ok": True, "summary": "", "details": {"worker": socket.gethostname()}}
    )
    if settings.KEYCHEST_CANARY_TARGET:
        last = Heartbeat.objects.filter(name=CANARY).values_list("at", flat=True).first()
        if last is None or (now - last).total_seconds() >= settings.KEYCHEST_CANARY_INTERVAL:
            canary_scan(now)
