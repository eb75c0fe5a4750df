""" "When does this expire?": the answer of GET /api/v1.0/servers/expiration/{domain} and
GET /api/v1/expiry, from the caller's own team's scan results only."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from django.db import connection

from api.models import ApiKey, EnrolmentKind, PendingEnrolment
from kcproto import renewal
from kcproto.targets import parse_target
from keychest.accounts.models import Team
from keychest.sqlrows import Part, column, execute_prepared, table
from monitors.models import ScanResult, Server, TeamScanPolicy, effective_thresholds


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
    return _report(host, [_entry(row, now) for row in rows])


def _entry(row: _Row, now: datetime) -> dict[str, Any]:
    """One address's line of the report."""
    not_before, not_after = (row.not_before, row.not_after) if row.leaf_sha256 else (None, None)
    due_now, renewal_utc = False, None
    if not_before is not None and not_after is not None:
        due, overdue = effective_thresholds(row.server_due, row.server_overdue, row.team_due, row.team_overdue)
        due_now = renewal.renewal_needed(not_before, not_after, now, due_fraction=due, overdue_fraction=overdue)
        renewal_utc = _utc(renewal.renewal_at(not_before, not_after, due_fraction=due))
    return {
        "ip": row.address,
        "port": row.port,
        "certificate_sha256": row.leaf_sha256 or None,
        "renewal_due": due_now,
        "expired": not_after is not None and now >= not_after,
        "renewal_utc": renewal_utc,
        "expires_utc": _utc(not_after),
        "last_scan_utc": _utc(row.last_seen),
        "error": row.error_code or None,
    }


class _Row(NamedTuple):
    """One current scan result of the server, with the server's and the team's thresholds."""

    address: str
    error_code: str
    leaf_sha256: str
    not_before: datetime | None
    not_after: datetime | None
    last_seen: datetime | None
    port: int
    server_due: float | None
    server_overdue: float | None
    team_due: float | None
    team_overdue: float | None


# The rows in one hand-written query, read as plain values: the ORM spent more CPU compiling it
# than PostgreSQL spent running it, and building model instances for a dozen values did too.
_RESULT_FIELDS = ("address", "error_code", "leaf_sha256", "not_before", "not_after", "last_seen")
_SERVER_FIELDS = ("port", "due_fraction", "overdue_fraction")
_POLICY_FIELDS = ("due_fraction", "overdue_fraction")
_RESULT = Part("r", ScanResult, _RESULT_FIELDS)
_SERVER = Part("s", Server, _SERVER_FIELDS)
_POLICY = Part("p", TeamScanPolicy, _POLICY_FIELDS)
_PARTS = (_RESULT, _SERVER, _POLICY)
# A Part selects its fields in the model's order; where each _Row field is in that SELECT list.
_ORDER = [
    *(_RESULT.attnames.index(name) for name in _RESULT_FIELDS),
    *(len(_RESULT.attnames) + _SERVER.attnames.index(name) for name in _SERVER_FIELDS),
    *(len(_RESULT.attnames) + len(_SERVER.attnames) + _POLICY.attnames.index(name) for name in _POLICY_FIELDS),
]
_SQL: dict[bool, str] = {}


def _results_sql(with_port: bool) -> str:
    if with_port not in _SQL:
        r_team, s_team, p_team = (
            f"{a}.{column(m, 'team')}" for a, m in (("r", ScanResult), ("s", Server), ("p", TeamScanPolicy))
        )
        _SQL[with_port] = (
            f"SELECT {', '.join(c for part in _PARTS for c in part.select())} "  # noqa: S608 - names from model meta, values as parameters
            f"FROM {table(ScanResult)} r "
            f"JOIN {table(Server)} s ON s.{column(Server, 'id')} = r.{column(ScanResult, 'server')} "
            f"LEFT JOIN {table(TeamScanPolicy)} p ON {p_team} = r.{column(ScanResult, 'team')} "
            f"WHERE {r_team} = %s AND {s_team} = %s AND r.{column(ScanResult, 'current')} "
            f"AND s.{column(Server, 'host')} = %s AND s.{column(Server, 'removed_at')} IS NULL "
            + (f"AND s.{column(Server, 'port')} = %s " if with_port else "")
            + f"ORDER BY s.{column(Server, 'port')}, r.{column(ScanResult, 'address')}, r.{column(ScanResult, 'id')}"
        )
    return _SQL[with_port]


def _current_results(*, team_id: int, host: str, port: int | None) -> list[_Row]:
    """The server's current results, ordered by port, address."""
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
        values = [*_RESULT.values(row[:nr]), *_SERVER.values(row[nr : nr + ns]), *_POLICY.values(row[nr + ns :])]
        out.append(_Row._make(values[i] for i in _ORDER))
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
