"""What a weekly report says about a set of teams, read in a constant number of queries.

`teams_report_data(team_ids, now)` returns one `TeamReport` per team. Its query count does not
depend on how many servers, certificates or teams there are (the benchmark shows it), because
every selector reads all teams of a batch of users at once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q

from kcproto import renewal
from kcproto.checks import CODES
from monitors.models import Finding, ScanResult, Server, TeamScanPolicy, WatchedDomain
from monitors.registrations import registrations_expiring_for_teams
from notifications.models import Event, EventKind

SOON_DAYS = 28
NOW_DAYS = 7


@dataclass
class ExpiryRow:
    """A certificate on a server that expires soon."""

    server: str
    addresses: list[str]
    names: str
    not_before: datetime | None
    not_after: datetime
    renewal: str


@dataclass
class ProblemRow:
    server: str
    code: str
    label: str
    since: datetime | None


@dataclass
class IssuedRow:
    subject: str
    issuer: str
    not_after: datetime | None
    occurred_at: datetime


@dataclass
class DomainExpiryRow:
    domain: str
    expires_at: datetime
    registrar: str = ""


@dataclass
class TeamReport:
    team_id: int
    name: str
    servers: int = 0
    domains: int = 0
    certificates: int = 0
    expiring_now: list[ExpiryRow] = field(default_factory=list)
    expiring_soon: list[ExpiryRow] = field(default_factory=list)
    problems: list[ProblemRow] = field(default_factory=list)
    issued: list[IssuedRow] = field(default_factory=list)
    domain_expiries: list[DomainExpiryRow] = field(default_factory=list)

    @property
    def watches_anything(self) -> bool:
        return bool(self.servers or self.domains)

    @property
    def needs_attention(self) -> bool:
        return bool(self.expiring_now or self.expiring_soon or self.problems or self.domain_expiries)


def _parse_dt(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


# Findings the expiry lists already show, so the problem list does not repeat them.
EXPIRY_CODES = {"expired", "renewal_due", "renewal_overdue", "not_yet_valid"}
# Informational findings: news, not problems.
INFO_CODES = {"certificate_changed", "issuer_changed"}
# The scanner's own words for its codes (kcproto.checks.CODES), with a few of ours on top.
PROBLEM_LABELS = {code: meaning for code, (_severity, meaning) in CODES.items()}


def problem_label(code: str, message: str = "") -> str:
    if code == "down":
        return "Server down or TLS failure"
    return PROBLEM_LABELS.get(code) or message or code.replace("_", " ")


def _servers_part(reports: dict[int, TeamReport], team_ids: list[int], now: datetime) -> None:
    """Counts, expiring certificates per server:port and open problems, for all teams at once."""
    _server_counts(reports, team_ids)
    _expiring_part(reports, team_ids, now)
    _problems_part(reports, team_ids)


# Rows of servers that are still watched.
_LIVE = Q(server__removed_at=None)


def _server_counts(reports: dict[int, TeamReport], team_ids: list[int]) -> None:
    """Servers and distinct certificates served, per team."""
    live = _LIVE
    for team_id, count in (
        Server.objects.filter(team_id__in=team_ids, removed_at=None)
        .values("team_id")
        .annotate(n=Count("id"))
        .values_list("team_id", "n")
    ):
        reports[team_id].servers = count
    for team_id, count in (
        ScanResult.objects.filter(live, team_id__in=team_ids, current=True)
        .exclude(leaf_sha256="")
        .values("team_id")
        .annotate(n=Count("leaf_sha256", distinct=True))
        .values_list("team_id", "n")
    ):
        reports[team_id].certificates = count


def _expiring_part(reports: dict[int, TeamReport], team_ids: list[int], now: datetime) -> None:
    """Certificates expiring within SOON_DAYS, one row per (server, certificate)."""
    live = _LIVE
    policies = {p.team_id: p for p in TeamScanPolicy.objects.filter(team_id__in=team_ids)}
    soon = now + timedelta(days=SOON_DAYS)
    # One row per (server, certificate), with every address that serves it.
    grouped: dict[tuple[int, str], tuple[Server, ScanResult, list[str]]] = {}
    for result in (
        ScanResult.objects.filter(live, team_id__in=team_ids, current=True, not_after__lt=soon)
        .exclude(leaf_sha256="")
        .select_related("server")
        .order_by("not_after", "server_id", "address")
    ):
        key = (result.server_id, result.leaf_sha256)
        if key in grouped:
            grouped[key][2].append(result.address)
        else:
            grouped[key] = (result.server, result, [result.address])
    for server, result, addresses in grouped.values():
        assert result.not_after is not None
        due, overdue = server.thresholds(policies.get(server.team_id))
        state = (
            renewal.renewal_state(result.not_before, result.not_after, now, due_fraction=due, overdue_fraction=overdue)
            if result.not_before
            else ("expired" if result.not_after <= now else "due")
        )
        expiry = ExpiryRow(
            server=server.label,
            addresses=addresses,
            names=", ".join(result.names[:3]) + (" …" if len(result.names) > 3 else "") or result.subject,
            not_before=result.not_before,
            not_after=result.not_after,
            renewal=state,
        )
        report = reports[server.team_id]
        (report.expiring_now if result.not_after < now + timedelta(days=NOW_DAYS) else report.expiring_soon).append(
            expiry
        )


def _problems_part(reports: dict[int, TeamReport], team_ids: list[int]) -> None:
    """Open findings (expiry and informational ones aside) and failing addresses, per team."""
    live = _LIVE
    with_findings: set[int] = set()
    for finding in (
        Finding.objects.filter(live, team_id__in=team_ids, resolved_at=None)
        .select_related("server")
        .order_by("server__host", "server__port", "code")
    ):
        with_findings.add(finding.server_id)
        if finding.code in EXPIRY_CODES or finding.code in INFO_CODES:
            continue
        reports[finding.team_id].problems.append(
            ProblemRow(
                server=finding.server.label + (f" [{finding.address}]" if finding.address else ""),
                code=finding.code,
                label=problem_label(finding.code, finding.message),
                since=finding.first_seen,
            )
        )
    # A failing address without a finding of its own still counts as down.
    for result in (
        ScanResult.objects.filter(live, team_id__in=team_ids, current=True)
        .exclude(error_code="")
        .select_related("server")
        .order_by("server__host", "address")
    ):
        if result.server_id in with_findings:
            continue
        reports[result.team_id].problems.append(
            ProblemRow(
                server=f"{result.server.label} [{result.address}]",
                code=result.error_code,
                label=problem_label("down") + f": {result.error_code}",
                since=result.first_seen,
            )
        )


def teams_report_data(team_ids: list[int], names: dict[int, str], now: datetime) -> dict[int, TeamReport]:
    reports = {tid: TeamReport(team_id=tid, name=names.get(tid, "")) for tid in team_ids}
    if not team_ids:
        return reports
    _servers_part(reports, team_ids, now)
    domain_counts: dict[int, int] = defaultdict(int)
    for team_id in WatchedDomain.objects.filter(team_id__in=team_ids, removed_at=None).values_list(
        "team_id", flat=True
    ):
        domain_counts[team_id] += 1
    for team_id, count in domain_counts.items():
        reports[team_id].domains = count
    # Registrations (RDAP) of the team's domains and servers' domains expiring within 84 days.
    for team_id, registrations in registrations_expiring_for_teams(team_ids, now).items():
        reports[team_id].domain_expiries = [
            DomainExpiryRow(domain=r.domain, expires_at=r.expires_at, registrar=r.registrar)
            for r in registrations
            if r.expires_at is not None
        ]
    # Certificates newly issued for the team's domains this week, from CT ingestion's events.
    week_ago = now - timedelta(days=7)
    issued = (
        Event.objects.filter(team_id__in=team_ids, kind=EventKind.CERTIFICATE_ISSUED, occurred_at__gte=week_ago)
        .order_by("team_id", "-occurred_at")
        .values_list("team_id", "subject", "payload", "occurred_at")
    )
    for team_id, subject, payload, occurred_at in issued:
        payload = payload if isinstance(payload, dict) else {}
        reports[team_id].issued.append(
            IssuedRow(
                subject=subject,
                issuer=str(payload.get("issuer", "")),
                not_after=_parse_dt(payload.get("not_after")),
                occurred_at=occurred_at,
            )
        )
    return reports
