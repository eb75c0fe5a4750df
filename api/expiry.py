""" "When does this expire?": the answer of GET /api/v1.0/servers/expiration/{domain} and
GET /api/v1/expiry, from the caller's own team's scan results only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Subquery

from api.models import ApiKey, EnrolmentKind, PendingEnrolment
from keychest.accounts.models import Team
from monitors.models import ScanResult, Server, TeamScanPolicy
from monitors.targets import parse_target


def _utc(value: datetime | None) -> int | None:
    """Unix seconds (UTC), the form the v1.0 `*_utc` fields always had."""
    return int(value.timestamp()) if value is not None else None


def expiration_report(
    *, team: Team, target: str, now: datetime, api_key: ApiKey | None = None
) -> dict[str, Any] | None:
    """The report for `host[:port]`, or None when the team does not watch it. Raises InvalidTarget.

    An unconfirmed key sees only what it enrolled itself, which is held and not scanned.
    """
    host, port = parse_target(target)
    if api_key is not None and not api_key.is_confirmed():
        held = PendingEnrolment.objects.filter(api_key=api_key, kind=EnrolmentKind.SERVER, host=host)
        if port is not None:
            held = held.filter(port=port)
        if not held.exists():
            return None
        return _report(host, [], pending=True)

    policy = TeamScanPolicy.objects.filter(team=team)
    results = (
        ScanResult.objects.filter(team=team, current=True, server__host=host, server__removed_at=None)
        .select_related("server")
        .only(
            "address",
            "leaf_sha256",
            "not_before",
            "not_after",
            "last_seen",
            "error_code",
            "server__port",
            "server__due_fraction",
            "server__overdue_fraction",
        )
        # The team's thresholds ride along, so the report is one query.
        .annotate(
            team_due=Subquery(policy.values("due_fraction")[:1]),
            team_overdue=Subquery(policy.values("overdue_fraction")[:1]),
        )
    )
    if port is not None:
        results = results.filter(server__port=port)
    rows = list(results.order_by("server__port", "address", "id"))
    if not rows:
        servers = Server.objects.for_team(team).filter(host=host, removed_at=None)
        if port is not None:
            servers = servers.filter(port=port)
        if not servers.exists():
            return None
        return _report(host, [])
    entries = []
    for result in rows:
        team_policy = TeamScanPolicy(due_fraction=result.team_due, overdue_fraction=result.team_overdue)  # type: ignore[attr-defined]
        due, overdue = result.server.thresholds(team_policy)
        has_cert = bool(result.leaf_sha256)
        entries.append(
            {
                "ip": result.address,
                "port": result.server.port,
                "certificate_sha256": result.leaf_sha256 or None,
                "renewal_due": has_cert and result.renewal_due(now, due=due, overdue=overdue),
                "expired": has_cert and result.not_after is not None and now >= result.not_after,
                "renewal_utc": _utc(result.renewal_at(due=due)) if has_cert else None,
                "expires_utc": _utc(result.not_after) if has_cert else None,
                "last_scan_utc": _utc(result.last_seen),
                "error": result.error_code or None,
            }
        )
    return _report(host, entries)


def _report(host: str, entries: list[dict[str, Any]], *, pending: bool = False) -> dict[str, Any]:
    return {
        "status": "success",
        "domain": host,
        "pending": pending,
        "certificate_found": any(e["certificate_sha256"] for e in entries),
        "renewal_due": any(e["renewal_due"] for e in entries),
        "expired_found": any(e["expired"] for e in entries),
        "results": entries,
    }
