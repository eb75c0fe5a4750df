"""What the dashboard shows, read in a fixed number of queries whatever the team's size.

Everything counts distinct certificates (by SHA-256 of the leaf) currently served by the team's
watched servers, and the scanner's open findings; nothing here writes.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import Case, CharField, Count, F, Max, Q, QuerySet, Value, When, Window
from django.db.models.functions import RowNumber, TruncMonth

from certificates.models import Certificate, CertificateName
from dashboard.issuers import KIND_LABELS, KINDS, issuer_kind
from health.checks import SCAN_GRACE
from kcproto.checks import DOWN_CODES
from monitors.models import Finding, ScanResult, Server, WatchedDomain

if TYPE_CHECKING:
    from keychest.accounts.models import Team

DAY = timedelta(days=1)
# Planner buckets by whole days left: (key, label, first day, last day).
BUCKETS = (
    ("d0_7", "0\u20137 days", 0, 7),
    ("d8_14", "8\u201314 days", 8, 14),
    ("d15_21", "15\u201321 days", 15, 21),
    ("d22_28", "22\u201328 days", 22, 28),
)
# The dashboard shows the first few of each list (a constant amount of work whatever the team's
# size); the full lists are the servers and certificates pages, filtered and paginated.
PLANNER_PER_BUCKET = 10
INCIDENTS_PER_GROUP = 8

INCIDENT_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("dns", "DNS failures", ("dns_failure", "no_addresses")),
    (
        "unreachable",
        "Unreachable servers",
        ("target_refused", "connect_failed", "timeout", "not_tls", "tls_handshake_failed"),
    ),
    (
        "configuration",
        "Configuration errors",
        (
            "self_signed",
            "ca_leaf",
            "incomplete_chain",
            "no_certificate",
            "untrusted",
            "issuer_not_ca",
            "expired_intermediate",
            "not_for_server_auth",
            "path_length_exceeded",
            "name_constraints_violated",
        ),
    ),
    ("hostname", "Hostname mismatch", ("hostname_mismatch",)),
    ("expired", "Expired certificates", ("expired",)),
    ("ips_disagree", "Different certificates on different addresses", ("ips_disagree",)),
    ("not_deployed", "Renewed but not deployed", ("newer_certificate_not_deployed",)),
)
INCIDENT_CODES = tuple(code for _, _, codes in INCIDENT_GROUPS for code in codes)


@dataclass
class Tiles:
    expiring_now: int = 0
    expiring_soon: int = 0
    renewal_overdue: int = 0
    expired: int = 0
    on_servers: int = 0
    known_from_ct: int = 0
    servers: int = 0
    servers_down: int = 0
    servers_paused: int = 0
    servers_pending: int = 0
    # Freshness of the team's own scans (the line under the title; health).
    scans_overdue: int = 0
    last_scan_at: datetime | None = None


@dataclass
class CalendarMonth:
    start: date
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class PlannerEntry:
    """One certificate due in a bucket, with the servers (and addresses) that serve it."""

    sha256: str
    subject: str
    issuer: str
    not_after: datetime
    names: list[str]
    servers: list[tuple[Server, str]] = field(default_factory=list)


@dataclass
class PlannerBucket:
    key: str
    label: str
    count: int
    entries: list[PlannerEntry] = field(default_factory=list)


@dataclass
class IncidentGroup:
    key: str
    label: str
    count: int
    findings: list[Finding] = field(default_factory=list)


@dataclass
class Dashboard:
    now: datetime
    tiles: Tiles
    calendar: list[CalendarMonth]
    calendar_kinds: list[tuple[str, str]]
    planner: list[PlannerBucket]
    incidents: list[IncidentGroup]


def current_results(team: Team) -> QuerySet[ScanResult]:
    """What the team's watched servers serve now: one row per (server, address)."""
    return ScanResult.objects.for_team(team).filter(current=True, server__removed_at=None)


def _bucket_of(not_after: datetime, now: datetime) -> str | None:
    if not_after <= now:
        return "expired"
    days = int((not_after - now) / DAY)
    for key, _, first, last in BUCKETS:
        if first <= days <= last:
            return key
    return None


def _tiles(team: Team, now: datetime) -> tuple[Tiles, dict[str, int]]:
    leafs = current_results(team).exclude(leaf_sha256="")
    distinct = "leaf_sha256"
    windows = {
        key: Count(
            distinct, distinct=True, filter=Q(not_after__gte=now + first * DAY, not_after__lt=now + (last + 1) * DAY)
        )
        for key, _, first, last in BUCKETS
    }
    # The 0-7 bucket starts now, not at "7 whole days": a certificate with hours left is in it.
    windows["d0_7"] = Count(distinct, distinct=True, filter=Q(not_after__gt=now, not_after__lt=now + 8 * DAY))
    counts = leafs.aggregate(
        on_servers=Count(distinct, distinct=True),
        n_expired=Count(distinct, distinct=True, filter=Q(not_after__lte=now)),
        soon=Count(distinct, distinct=True, filter=Q(not_after__gt=now, not_after__lt=now + 29 * DAY)),
        **windows,
    )
    servers = Server.objects.for_team(team).filter(removed_at=None)
    server_counts = servers.aggregate(
        n_total=Count("id"),
        n_paused=Count("id", filter=Q(paused=True)),
        n_pending=Count("id", filter=Q(paused=False, last_scan_at=None)),
        n_overdue=Count("id", filter=Q(paused=False, next_scan_at__lt=now - SCAN_GRACE)),
        last_scan=Max("last_scan_at", filter=Q(paused=False)),
    )
    open_findings = Finding.objects.for_team(team).filter(resolved_at=None, server__removed_at=None)
    finding_counts = open_findings.aggregate(
        n_down=Count("server", distinct=True, filter=Q(code__in=DOWN_CODES, server__paused=False)),
        n_overdue=Count("server", distinct=True, filter=Q(code="renewal_overdue")),
    )
    tiles = Tiles(
        expiring_now=counts["d0_7"],
        expiring_soon=counts["soon"],
        renewal_overdue=finding_counts["n_overdue"],
        expired=counts["n_expired"],
        on_servers=counts["on_servers"],
        known_from_ct=_known_from_ct(team, now),
        servers=server_counts["n_total"],
        servers_down=finding_counts["n_down"],
        servers_paused=server_counts["n_paused"],
        servers_pending=server_counts["n_pending"],
        scans_overdue=server_counts["n_overdue"],
        last_scan_at=server_counts["last_scan"],
    )
    buckets = {key: counts[key] for key, _, _, _ in BUCKETS}
    buckets["expired"] = counts["n_expired"]
    return tiles, buckets


def watched_names_query(team: Team) -> Q | None:
    """A filter on CertificateName for every name under the team's watched domains (None: none)."""
    return WatchedDomain.names_query(team)


def _known_from_ct(team: Team, now: datetime) -> int:
    """Valid issuances (a precertificate and its certificate once) read from CT logs and naming
    the watched domains: a certificate only scanned or uploaded is not "known from CT"."""
    names = watched_names_query(team)
    if names is None:
        return 0
    matching = CertificateName.objects.filter(names, not_after__gt=now).values("certificate_id")
    return (
        Certificate.objects.filter(id__in=matching, is_ca=False, not_before__lte=now, ct_logged=True)
        .values("issuance_key")
        .distinct()
        .count()
    )


def _month_starts(now: datetime, tz: zoneinfo.ZoneInfo, months: int = 12) -> list[date]:
    local = now.astimezone(tz)
    year, month = local.year, local.month
    out = []
    for _ in range(months):
        out.append(date(year, month, 1))
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return out


def _calendar(team: Team, now: datetime, tz: zoneinfo.ZoneInfo) -> list[CalendarMonth]:
    """Certificates expiring in each of the next 12 months (in the user's zone), by issuer kind."""
    starts = _month_starts(now, tz, 13)
    begin = datetime(starts[0].year, starts[0].month, 1, tzinfo=tz)
    end = datetime(starts[12].year, starts[12].month, 1, tzinfo=tz)
    rows = (
        current_results(team)
        .exclude(leaf_sha256="")
        .filter(not_after__gte=begin, not_after__lt=end)
        .annotate(month=TruncMonth("not_after", tzinfo=tz))
        .values("month", "issuer")
        .annotate(n=Count("leaf_sha256", distinct=True))
        .order_by()
    )
    by_month: dict[date, dict[str, int]] = {start: dict.fromkeys(KINDS, 0) for start in starts[:12]}
    for row in rows:
        month = row["month"]
        key = month.date() if isinstance(month, datetime) else month
        if key in by_month:
            by_month[key][issuer_kind(row["issuer"])] += row["n"]
    return [CalendarMonth(start=start, counts=counts) for start, counts in by_month.items()]


PLANNER_FIELDS = ("leaf_sha256", "subject", "issuer", "names", "not_after", "address", "server")
SERVER_FIELDS = ("server__uuid", "server__host", "server__port", "server__protocol")


def _planner(team: Team, now: datetime, counts: dict[str, int]) -> list[PlannerBucket]:
    """The buckets, most urgent first, expired last; each lists its first PLANNER_PER_BUCKET certificates.

    Three queries: the (certificate, expiry) pairs due within 28 days, soonest first; the most
    recently expired; then the rows serving the few certificates that are shown.
    """
    pairs = current_results(team).exclude(leaf_sha256="").values_list("leaf_sha256", "not_after").distinct()
    due = pairs.filter(not_after__gt=now, not_after__lt=now + 29 * DAY).order_by("not_after", "leaf_sha256")
    # The most recently expired first: what broke last week matters more than last year's.
    expired = pairs.filter(not_after__lte=now).order_by("-not_after", "leaf_sha256")[:PLANNER_PER_BUCKET]
    chosen: dict[str, list[str]] = {key: [] for key, _, _, _ in BUCKETS}
    for leaf, not_after in due:
        if not_after is None:  # the filter above excludes it; the column is nullable
            continue
        key = _bucket_of(not_after, now)
        if key is not None and len(chosen[key]) < PLANNER_PER_BUCKET:
            chosen[key].append(leaf)
    chosen["expired"] = [leaf for leaf, _ in expired]
    wanted = [leaf for leaves in chosen.values() for leaf in leaves]
    rows = (
        current_results(team)
        .filter(leaf_sha256__in=wanted)
        .select_related("server")
        .only(*PLANNER_FIELDS, *SERVER_FIELDS)
        .order_by("not_after", "leaf_sha256", "server__host", "address")
    )
    entries: dict[str, PlannerEntry] = {}
    for row in rows if wanted else []:
        entry = entries.get(row.leaf_sha256)
        if entry is None:
            entry = entries[row.leaf_sha256] = PlannerEntry(
                sha256=row.leaf_sha256,
                subject=row.subject,
                issuer=row.issuer,
                not_after=row.not_after,  # type: ignore[arg-type]
                names=list(row.names or [])[:5],
            )
        entry.servers.append((row.server, row.address))
    buckets = [
        PlannerBucket(
            key=key, label=label, count=counts[key], entries=[entries[leaf] for leaf in chosen[key] if leaf in entries]
        )
        for key, label, _, _ in BUCKETS
    ]
    buckets.append(
        PlannerBucket(
            key="expired",
            label="Expired",
            count=counts["expired"],
            entries=[entries[leaf] for leaf in chosen["expired"] if leaf in entries],
        )
    )
    return buckets


def _incidents(team: Team) -> list[IncidentGroup]:
    open_findings = Finding.objects.for_team(team).filter(
        resolved_at=None, server__removed_at=None, code__in=INCIDENT_CODES
    )
    counts = dict(open_findings.values_list("code").annotate(n=Count("id")).order_by())
    group_key = Case(
        *[When(code__in=codes, then=Value(key)) for key, _, codes in INCIDENT_GROUPS],
        output_field=CharField(),
    )
    # The newest few of every group in one query: number the rows within each group.
    rows = (
        open_findings.annotate(
            group=group_key,
            rank=Window(RowNumber(), partition_by=[group_key], order_by=[F("last_seen").desc(), F("id").desc()]),
        )
        .filter(rank__lte=INCIDENTS_PER_GROUP)
        .select_related("server")
        .defer("details")
        .order_by("-last_seen", "-id")
    )
    groups = [
        IncidentGroup(key=key, label=label, count=sum(counts.get(code, 0) for code in codes))
        for key, label, codes in INCIDENT_GROUPS
    ]
    by_key = {group.key: group for group in groups}
    for finding in rows:
        by_key[finding.group].findings.append(finding)  # type: ignore[attr-defined]
    return groups


def dashboard_for(*, team: Team, now: datetime, tz: zoneinfo.ZoneInfo) -> Dashboard:
    tiles, bucket_counts = _tiles(team, now)
    return Dashboard(
        now=now,
        tiles=tiles,
        calendar=_calendar(team, now, tz),
        calendar_kinds=[(kind, KIND_LABELS[kind]) for kind in KINDS],
        planner=_planner(team, now, bucket_counts),
        incidents=_incidents(team),
    )


def planner_bucket_lists(dashboard: Dashboard) -> dict[str, list[PlannerEntry]]:
    """Planner entries by bucket key (for tests and exports)."""
    out: dict[str, list[PlannerEntry]] = defaultdict(list)
    for bucket in dashboard.planner:
        out[bucket.key] = bucket.entries
    return out
