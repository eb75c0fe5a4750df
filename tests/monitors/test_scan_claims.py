"""Scan claims (issue 21): a batch scans only the servers its claim holds, renews the claim while
it scans, stores only what it still holds, and gives the rest back; new servers are queued on
commit. The worker tests run real Celery workers on Redis and SIGKILL one mid batch."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from django.utils import timezone

from monitors.models import ScanResult, Server
from monitors.scan_claims import ScanClaim, token_parse
from monitors.scanning import scan_servers, servers_claim_due
from monitors.services import server_enrol, servers_enrol_bulk
from tests.celery_worker import celery_worker, wait_for


def _enrol(people, *hosts: str) -> list[Server]:  # type: ignore[no-untyped-def]
    return [server_enrol(team=people.team_a, host=host, scan_soon=False) for host in hosts]


def _held(server: Server) -> dt.datetime | None:
    return Server.objects.values_list("claimed_until", flat=True).get(pk=server.pk)


@pytest.mark.django_db
def test_a_batch_takes_only_what_its_token_still_holds(people) -> None:
    a, b, c = _enrol(people, "a.example.com", "b.example.com", "c.example.com")
    now = timezone.now()
    lease = dt.timedelta(seconds=40)
    assert sorted(servers_claim_due(limit=2, now=now, lease=lease)) == sorted([a.pk, b.pk])
    token = now + lease
    # c is held by another batch's live claim.
    Server.objects.filter(pk=c.pk).update(claimed_until=now + dt.timedelta(seconds=30))
    claim = ScanClaim.take([a.pk, b.pk, c.pk], token=token, now=now + dt.timedelta(seconds=1))
    assert claim.ids == sorted([a.pk, b.pk]) and claim.until == now + dt.timedelta(seconds=41)
    assert _held(a) == claim.until and _held(c) == now + dt.timedelta(seconds=30)
    # The same message handed out again while the first run holds the servers: nothing to take.
    assert ScanClaim.take([a.pk, b.pk], token=token, now=now + dt.timedelta(seconds=2)).ids == []
    # Without a token (a first scan, "scan now"): only free servers.
    assert ScanClaim.take([a.pk, c.pk], token=None, now=now + dt.timedelta(seconds=2)).ids == []
    # After the scan (claim cleared, next scan in the future) the old message skips the server;
    # a server whose claim ran out and that is still due is taken over.
    Server.objects.filter(pk=a.pk).update(claimed_until=None, next_scan_at=now + dt.timedelta(hours=1))
    later = now + dt.timedelta(minutes=5)
    assert ScanClaim.take([a.pk, b.pk], token=token, now=later).ids == [b.pk]
    # Removed servers are never taken.
    Server.objects.filter(pk=c.pk).update(removed_at=now)
    assert ScanClaim.take([c.pk], token=None, now=later + dt.timedelta(minutes=5)).ids == []


def test_tokens_round_trip_through_a_message() -> None:
    now = timezone.now()
    assert token_parse(now.isoformat()) == now
    assert token_parse(None) is None and token_parse("") is None and token_parse("garbage") is None
    naive = dt.datetime(2026, 1, 2, 3, 4, 5, 6)
    assert token_parse(naive.isoformat()) == naive.replace(tzinfo=dt.UTC)


@pytest.mark.django_db
def test_a_scan_stores_only_the_servers_its_claim_still_holds(people, lab, lab_settings) -> None:
    ours, lost = _enrol(people, f"127.0.0.1:{lab.closed_port()}", f"127.0.0.1:{lab.closed_port()}")
    claim = ScanClaim.take([ours.pk, lost.pk], token=None)
    assert claim.ids == sorted([ours.pk, lost.pk])
    claim.renew()
    # This worker stalled past its lease: another scan took `lost` over meanwhile.
    other = timezone.now() + dt.timedelta(seconds=40)
    Server.objects.filter(pk=lost.pk).update(claimed_until=other)
    scan_servers(list(Server.objects.filter(pk__in=claim.ids).order_by("pk")), keep=claim.held)
    assert ScanResult.objects.filter(server=ours).count() == 1 and _held(ours) is None
    assert not ScanResult.objects.filter(server=lost).exists()
    assert _held(lost) == other  # the other scan's claim is untouched
    assert claim.release() == 0


@pytest.mark.django_db(transaction=True)
def test_the_claim_is_renewed_while_the_scan_runs_and_released_after(people) -> None:
    (server,) = _enrol(people, "renew.example.com")
    claim = ScanClaim.take([server.pk], token=None, lease=dt.timedelta(seconds=5))
    first = _held(server)
    with claim.renewing(every=0.1):
        deadline = time.monotonic() + 10
        while _held(server) == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _held(server) is not None and _held(server) > first  # type: ignore[operator]
    assert _held(server) is None  # not scanned: given back at once, beat takes it on its next pass


@pytest.mark.django_db
def test_enrolments_queue_one_first_scan_batch_on_commit(people, settings, django_capture_on_commit_callbacks) -> None:
    settings.KEYCHEST_SCAN_BATCH = 2
    with django_capture_on_commit_callbacks() as callbacks:
        result = servers_enrol_bulk(team=people.team_a, text="x1.example.com\nx2.example.com\nx3.example.com")
        server_enrol(team=people.team_a, host="x4.example.com")
    assert len(callbacks) == 1  # one pending list per transaction, sent in batches on commit
    assert callbacks[0].keychest_first_scans == [s.pk for s in result.created] + [  # type: ignore[attr-defined]
        Server.objects.get(host="x4.example.com").pk
    ]
    with django_capture_on_commit_callbacks() as callbacks:
        server_enrol(team=people.team_a, host="x5.example.com", scan_soon=False)
    assert callbacks == []


# --- real workers -------------------------------------------------------------------------------
class HangingServer:
    """A TCP server on 127.0.0.1 that accepts and never answers, counting connections and the
    most it held open at once (a scan of it is in flight while its connection is open)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.open = 0
        self.most_open = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.open += 1
                self.most_open = max(self.most_open, self.open)
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    if not conn.recv(4096):
                        break
                except OSError:
                    break
        with self._lock:
            self.open -= 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


WORKER_ENV = {
    "KEYCHEST_ALLOW_PRIVATE_TARGETS": "1",
    "KEYCHEST_SCAN_DEADLINE": "12",
    "KEYCHEST_SCAN_CONNECT_TIMEOUT": "1",
    "KEYCHEST_DNS_TIMEOUT": "1",
    "KEYCHEST_SCAN_LEGACY_TLS": "0",
    "KEYCHEST_SCAN_ALTERNATE_KEY": "0",
    "KEYCHEST_SCAN_CLAIM_LEASE": "4",
}


def worker_test(test):  # type: ignore[no-untyped-def]
    """A test with real workers: PostgreSQL (transactions they can see) and Redis."""
    for mark in (
        pytest.mark.celery,
        pytest.mark.slow,
        pytest.mark.django_db(transaction=True),
        pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set: no broker for a real worker"),
    ):
        test = mark(test)
    return test


@worker_test
def test_a_new_server_is_scanned_within_seconds_without_beat(people, lab, lab_settings) -> None:  # type: ignore[no-untyped-def]
    endpoint = lab.tls(lab.leaf(["fresh.keychest.test"]))
    with celery_worker({**WORKER_ENV, "KEYCHEST_SCAN_DEADLINE": "3"}) as worker:
        time.sleep(2)  # the worker is up and waiting: what is measured is the enrolment's queueing
        enrolled = time.monotonic()
        server = server_enrol(team=people.team_a, host=f"127.0.0.1:{endpoint.port}")
        wait_for(lambda: ScanResult.objects.filter(server=server, current=True).exists(), worker, timeout=60)
        took = time.monotonic() - enrolled
        # The first scan came from the enrolment: beat never ran here.
        assert took < 20, f"first scan {took:.1f} s after enrolment"
        wait_for(lambda: _held(server) is None, worker, timeout=20)


@worker_test
def test_a_killed_workers_batch_is_scanned_again_after_its_lease_never_twice_at_once(
    people, lab, lab_settings, hanging, settings
) -> None:  # type: ignore[no-untyped-def]
    from monitors.tasks import scan_batch, scan_due

    settings.KEYCHEST_SCAN_CLAIM_LEASE = 4  # beat's claims in this process: the workers' lease
    endpoint = lab.tls(lab.leaf(["steady.keychest.test"]))
    stuck, steady = _enrol(people, f"127.0.0.1:{hanging.port}", f"127.0.0.1:{endpoint.port}")
    ids = [stuck.pk, steady.pk]

    def scanned() -> bool:
        return ScanResult.objects.filter(server_id__in=ids, current=True).values("server_id").distinct().count() == 2

    with celery_worker(WORKER_ENV) as first:
        assert scan_due() == 2  # beat's pass: one claimed batch
        token = _held(stuck)
        wait_for(lambda: hanging.open == 1, first, timeout=60)  # the batch is in flight
        # Two leases go by while the scan runs: the worker renews its claim, so beat's passes
        # find nothing to queue and nobody else connects.
        until = time.monotonic() + 9
        while time.monotonic() < until:
            assert scan_due() == 0
            time.sleep(0.5)
        assert hanging.accepted == 1 and _held(stuck) > token  # type: ignore[operator]
        first.kill()  # SIGKILL mid batch: nothing stored, nothing released
        first.wait()
        killed = time.monotonic()
    assert not ScanResult.objects.filter(server_id__in=ids).exists()
    assert _held(stuck) is not None

    with celery_worker(WORKER_ENV) as second:
        # Beat, every second here (every minute in production): the claim runs out, the servers
        # are claimed again and scanned by the live worker.
        requeued = 0
        while not scanned():
            requeued += scan_due()
            assert second.poll() is None, "the second worker died"
            assert time.monotonic() - killed < 60, "the killed batch was not scanned again"
            time.sleep(1)
        recovered = time.monotonic() - killed
        assert requeued == 2 and recovered < 4 + 1 + 12 + 15, f"scanned again {recovered:.1f} s after the kill"
        assert hanging.accepted == 2 and hanging.most_open == 1  # never two scans at once
        wait_for(lambda: _held(stuck) is None and _held(steady) is None, second, timeout=20)

        # The killed message, handed out again by the broker later, finds its servers scanned
        # and skips them. (A scan of `steady` queued after it shows the worker has run it.)
        last = dict(Server.objects.filter(pk__in=ids).values_list("pk", "last_scan_at"))
        scan_batch.delay(ids, token.isoformat())  # type: ignore[union-attr]
        scan_batch.delay([steady.pk])
        wait_for(lambda: Server.objects.get(pk=steady.pk).last_scan_at != last[steady.pk], second, timeout=30)
    assert Server.objects.get(pk=stuck.pk).last_scan_at == last[stuck.pk]
    assert hanging.accepted == 2
