""" "When does this expire?": the answer of GET /api/v1.0/servers/expiration/{domain} and
GET /api/v1/expiry, from the caller's own team's scan results only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection

from api.models import ApiKey, EnrolmentKind, PendingEnrolment
from keychest.accounts.models import Team
from keychest.sqlrows import Part, column, execute_prepared, table
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

    rows = _current_results(team_id=team.pk, host=host, port=port)
    if not rows:
        servers = Server.objects.for_team(team).filter(host=host, removed_at=None)
        if port is not None:
            servers = servers.filter(port=port)
        if not servers.exists():
            return None
        return _report(host, [])
    entries = []
    for result, team_policy in rows:
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


# The current scan results of a team's server, with the server's and the team's thresholds, in
# one hand-written query: the ORM spent more CPU compiling it than PostgreSQL spent running it.
_RESULT = Part(
    "r",
    ScanResult,
    ("id", "server_id", "address", "error_code", "leaf_sha256", "not_before", "not_after", "last_seen"),
)
_SERVER = Part("s", Server, ("id", "port", "due_fraction", "overdue_fraction"))
_POLICY = Part("p", TeamScanPolicy, ("due_fraction", "overdue_fraction"))
_SQL: dict[bool, str] = {}


def _results_sql(with_port: bool) -> str:
    if with_port not in _SQL:
        r_team, s_team, p_team = (
            f"{a}.{column(m, 'team')}" for a, m in (("r", ScanResult), ("s", Server), ("p", TeamScanPolicy))
        )
        _SQL[with_port] = (
            f"SELECT {', '.join([*_RESULT.select(), *_SERVER.select(), *_POLICY.select()])} "  # noqa: S608 - names from model meta, values as parameters
            f"FROM {table(ScanResult)} r "
            f"JOIN {table(Server)} s ON s.{column(Server, 'id')} = r.{column(ScanResult, 'server')} "
            f"LEFT JOIN {table(TeamScanPolicy)} p ON {p_team} = r.{column(ScanResult, 'team')} "
            f"WHERE {r_team} = %s AND {s_team} = %s AND r.{column(ScanResult, 'current')} "
            f"AND s.{column(Server, 'host')} = %s AND s.{column(Server, 'removed_at')} IS NULL "
            + (f"AND s.{column(Server, 'port')} = %s " if with_port else "")
            + f"ORDER BY s.{column(Server, 'port')}, r.{column(ScanResult, 'address')}, r.{column(ScanResult, 'id')}"
        )
    return _SQL[with_port]


def _current_results(*, team_id: int, host: str, port: int | None) -> list[tuple[ScanResult, TeamScanPolicy]]:
    """[(result with its server, the team's policy)] ordered by port, address."""
    params: list[Any] = [team_id, team_id, host]
    if port is not None:
        params.append(port)
    with connection.cursor() as cursor:
        name = "kc_api_expiry_port" if port is not None else "kc_api_expiry"
        execute_prepared(cursor, name, _results_sql(port is not None), params)
        raw = cursor.fetchall()
    nr, ns = len(_RESULT.attnames), len(_SERVER.attnames)
    out = []
    for row in raw:
        result = _RESULT.instance(_RESULT.values(row[:nr]))
        result.server = _SERVER.instance(_SERVER.values(row[nr : nr + ns]))
        due, overdue = _POLICY.values(row[nr + ns :])
        out.append((result, TeamScanPolicy(due_fraction=due, overdue_fraction=overdue)))
    return out


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
