"""Scheduling: due servers are claimed atomically, rescheduled with jitter, and queued by beat."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.utils import timezone

from monitors.models import Server
from monitors.scanning import scan_servers, servers_claim_due
from monitors.services import server_enrol, server_pause, server_remove

pytestmark = pytest.mark.django_db


def test_due_servers_are_claimed_once(people) -> None:
    servers = [server_enrol(team=people.team_a, host=f"s{i}.example.com") for i in range(5)]
    server_pause(server=servers[3])
    server_remove(server=servers[4])
    Server.objects.filter(pk=servers[2].pk).update(next_scan_at=timezone.now() + dt.timedelta(hours=1))
    first = servers_claim_due(limit=10)
    assert sorted(first) == sorted([servers[0].pk, servers[1].pk])
    # A second scheduler (or a retried task) finds nothing to claim while the lease holds.
    assert servers_claim_due(limit=10) == []
    # After the lease runs out (a worker died), the rows are claimable again.
    later = timezone.now() + dt.timedelta(minutes=20)
    assert sorted(servers_claim_due(limit=10, now=later)) == sorted(first)


def test_claims_respect_the_limit_and_take_the_most_overdue_first(people) -> None:
    servers = [server_enrol(team=people.team_a, host=f"o{i}.example.com") for i in range(3)]
    base = timezone.now()
    for i, server in enumerate(servers):
        Server.objects.filter(pk=server.pk).update(next_scan_at=base - dt.timedelta(minutes=i))
    assert servers_claim_due(limit=2) == [servers[2].pk, servers[1].pk]


def test_a_scan_reschedules_with_jitter_and_releases_the_claim(people, lab_settings) -> None:
    servers = [server_enrol(team=people.team_a, host="127.0.0.1", port=1 + i) for i in range(20)]
    servers_claim_due(limit=100)
    before = timezone.now()
    scan_servers(list(Server.objects.filter(pk__in=[s.pk for s in servers])))
    delays = []
    for server in Server.objects.filter(pk__in=[s.pk for s in servers]):
        assert server.claimed_until is None and server.last_scan_at is not None
        delays.append((server.next_scan_at - before).total_seconds() / server.scan_interval)
    assert all(0.84 <= d <= 1.16 for d in delays)
    assert len({round(d, 4) for d in delays}) > 1  # jittered, not all equal


def test_beat_runs_the_due_scan_every_minute() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["monitors-scan-due"]
    assert entry["task"] == "monitors.tasks.scan_due"
    from monitors import tasks

    assert tasks.scan_due.name == "monitors.tasks.scan_due"


def test_scan_due_claims_and_queues_batches(people, monkeypatch) -> None:
    from monitors import tasks

    queued: list[list[int]] = []
    tokens: set[str] = set()

    def delay(ids: list[int], token: str) -> None:
        queued.append(ids)
        tokens.add(token)

    monkeypatch.setattr(tasks.scan_batch, "delay", delay)
    monkeypatch.setattr(settings, "KEYCHEST_SCAN_BATCH", 2)
    for i in range(5):
        server_enrol(team=people.team_a, host=f"q{i}.example.com")
    assert tasks.scan_due() == 5
    assert [len(b) for b in queued] == [2, 2, 1]
    # Each message carries its claim's end as its token: what the servers hold now.
    held = {s.claimed_until for s in Server.objects.filter(team=people.team_a)}
    assert {dt.datetime.fromisoformat(t) for t in tokens} == held
    assert tasks.scan_due() == 0
