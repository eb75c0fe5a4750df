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

from monitors.models import WatchedDomain
from notifications.models import Event, EventKind

SOON_DAYS = 28
NOW_DAYS = 7


def renewal_state(not_before: datetime | None, not_after: datetime, now: datetime) -> str:
    """'overdue', 'due' or 'planned', as a fraction of the certificate's own lifetime.

    ACME clients renew with a third of the lifetime left (30 of 90 days); with a sixth left
    the renewal has failed for half its window, which we call overdue. A 6-day certificate
    with 1 day left is overdue; a 398-day one with 30 days left is merely planned.
    """
    if not_after <= now:
        return "expired"
    lifetime = (not_after - not_before) if not_before else timedelta(days=90)
    left = not_after - now
    if left <= lifetime / 6:
        return "overdue"
    if left <= lifetime / 3:
        return "due"
    return "planned"


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


def teams_report_data(team_ids: list[int], names: dict[int, str], now: datetime) -> dict[int, TeamReport]:
    reports = {tid: TeamReport(team_id=tid, name=names.get(tid, "")) for tid in team_ids}
    if not team_ids:
        return reports
    domain_counts: dict[int, int] = defaultdict(int)
    for team_id in WatchedDomain.objects.filter(team_id__in=team_ids, removed_at=None).values_list(
        "team_id", flat=True
    ):
        domain_counts[team_id] += 1
    for team_id, count in domain_counts.items():
        reports[team_id].domains = count
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
