"""The rescan write path (issue 19): only what changed is written, in set-based statements whose
number does not grow with the batch, inside one transaction; claims end and the cadence holds."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keychest.sqlrows import update_rows
from lab.pki import now
from monitors.models import Finding, ScanResult, Server
from monitors.scanning import scan_servers
from monitors.services import ca_bundle_create, server_enrol

pytestmark = pytest.mark.django_db


def _servers(people, lab, lab_name, count: int, *, expired: bool = False) -> list[Server]:  # type: ignore[no-untyped-def]
    bundle = ca_bundle_create(team=people.team_a, name=f"lab {count}", pem=lab.root_pem)
    made = []
    for _ in range(count):
        host = lab_name("rescan")
        old = {"not_before": now() - dt.timedelta(days=100), "not_after": now() - dt.timedelta(days=10)}
        endpoint = lab.tls(lab.leaf([host], **(old if expired else {})))
        made.append(server_enrol(team=people.team_a, host=f"{host}:{endpoint.port}", ca_bundle=bundle))
    return made


def _fresh(servers: list[Server]) -> list[Server]:
    return list(Server.objects.filter(pk__in=[s.pk for s in servers]).select_related("ca_bundle").order_by("pk"))


def _writes(servers: list[Server]) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        scan_servers(_fresh(servers), force_dns=True)
    return [q["sql"] for q in captured.captured_queries if q["sql"].split()[0] in ("INSERT", "UPDATE", "DELETE")]


def test_a_rescan_of_unchanged_servers_inserts_nothing_and_builds_no_case_when(
    people, lab, lab_name, lab_settings
) -> None:
    servers = _servers(people, lab, lab_name, 3, expired=True)
    scan_servers(_fresh(servers))
    findings = {f.pk: f.last_seen for f in Finding.objects.filter(server__in=servers)}
    results = set(ScanResult.objects.filter(server__in=servers, current=True).values_list("pk", flat=True))
    writes = _writes(servers)
    assert not [sql for sql in writes if sql.startswith("INSERT")]
    assert not [sql for sql in writes if "CASE WHEN" in sql]
    # The same rows, seen again: the results and the `expired` findings only move last_seen.
    assert set(ScanResult.objects.filter(server__in=servers, current=True).values_list("pk", flat=True)) == results
    after = {f.pk: f.last_seen for f in Finding.objects.filter(server__in=servers, resolved_at=None)}
    assert after.keys() == findings.keys() and all(after[pk] > findings[pk] for pk in findings)


def test_the_number_of_statements_does_not_grow_with_the_batch(people, lab, lab_name, lab_settings) -> None:
    small, large = _servers(people, lab, lab_name, 2), _servers(people, lab, lab_name, 8)
    for batch in (small, large):
        scan_servers(_fresh(batch))
    assert len(_writes(small)) == len(_writes(large))


def test_a_rescan_ends_the_claim_and_schedules_the_next_scan(people, lab, lab_name, lab_settings) -> None:
    servers = _servers(people, lab, lab_name, 2)
    scan_servers(_fresh(servers))
    lease = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=15)
    Server.objects.filter(pk__in=[s.pk for s in servers]).update(claimed_until=lease)
    before = dt.datetime.now(dt.UTC)
    scan_servers(_fresh(servers))
    for server in _fresh(servers):
        assert server.claimed_until is None and server.last_scan_at >= before
        interval = (server.next_scan_at - server.last_scan_at).total_seconds()
        assert 0.85 * server.scan_interval <= interval <= 1.15 * server.scan_interval
        assert server.dns_addresses == ["127.0.0.1"] and server.last_scan_ms >= 0


def test_update_rows_sets_per_row_and_shared_values_in_one_statement(people) -> None:
    servers = [server_enrol(team=people.team_a, host=f"u{i}.example.com") for i in range(3)]
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    rows = [(s.pk, i * 10, [f"192.0.2.{i}"], f"error{i}") for i, s in enumerate(servers[:2])]
    with CaptureQueriesContext(connection) as captured:
        updated = update_rows(
            Server,
            ["last_scan_ms", "dns_addresses", "dns_error"],
            rows,
            same={"last_scan_at": at, "claimed_until": None},
        )
    assert updated == 2 and len(captured.captured_queries) == 1
    first, second, untouched = _fresh(servers)
    assert (first.last_scan_ms, first.dns_addresses, first.dns_error, first.last_scan_at) == (
        0,
        ["192.0.2.0"],
        "error0",
        at,
    )
    assert (second.last_scan_ms, second.dns_addresses, second.dns_error) == (10, ["192.0.2.1"], "error1")
    assert untouched.last_scan_at is None and untouched.dns_addresses == []
    assert update_rows(Server, ["last_scan_ms"], []) == 0


def test_update_rows_splits_many_rows_into_chunks(people, monkeypatch) -> None:
    monkeypatch.setattr("keychest.sqlrows.UPDATE_CHUNK", 2)
    servers = [server_enrol(team=people.team_a, host=f"c{i}.example.com") for i in range(5)]
    with CaptureQueriesContext(connection) as captured:
        assert update_rows(Server, ["last_scan_ms"], [(s.pk, 100 + i) for i, s in enumerate(servers)]) == 5
    assert len(captured.captured_queries) == 3
    assert [s.last_scan_ms for s in _fresh(servers)] == [100, 101, 102, 103, 104]
