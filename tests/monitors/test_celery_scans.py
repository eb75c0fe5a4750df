"""The queued scan path through a real Celery worker on Redis: `manage.py scan` without --sync
and the beat task `scan_due` hand servers to a worker process, whose scans of real lab servers
land as results and findings in the database. Needs REDIS_URL and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from lab.pki import now
from monitors.models import Finding, ScanResult, Server
from monitors.services import ca_bundle_create, server_enrol
from tests.celery_worker import celery_worker, wait_for

pytestmark = [
    pytest.mark.celery,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    # Checked here too, so a run without Redis skips before the (session-wide) lab starts.
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set: no broker for a real worker"),
]


@pytest.fixture
def worker(lab_settings, lab_dns):  # type: ignore[no-untyped-def]
    lab_settings.KEYCHEST_SCAN_BATCH = 1  # one task per server: the batching is exercised too
    env = {
        "KEYCHEST_ALLOW_PRIVATE_TARGETS": "1",
        "KEYCHEST_DNS_NAMESERVERS": lab_dns.nameserver,
        "KEYCHEST_SCAN_DEADLINE": "2",
        "KEYCHEST_SCAN_CONNECT_TIMEOUT": "1",
        "KEYCHEST_DNS_TIMEOUT": "1",
        "KEYCHEST_SCAN_BATCH": "1",
    }
    with celery_worker(env) as process:
        yield process


def _open_codes(server: Server) -> set[str]:
    return set(Finding.objects.filter(server=server, resolved_at=None).values_list("code", flat=True))


def _claimed(*servers: Server) -> bool:
    return Server.objects.filter(pk__in=[s.pk for s in servers]).exclude(claimed_until=None).exists()


def _scanned(*servers: Server) -> bool:
    return all(ScanResult.objects.filter(server=server, current=True).exists() for server in servers)


def test_queued_scans_and_the_beat_task_run_on_a_real_worker(people, lab, lab_name, worker) -> None:
    bundle = ca_bundle_create(team=people.team_a, name="lab root", pem=lab.root_pem)
    valid_name, expired_name, wrong_name = lab_name("valid"), lab_name("expired"), lab_name("wrong")
    valid = lab.tls(lab.leaf([valid_name]))
    expired = lab.tls(
        lab.leaf([expired_name], not_before=now() - dt.timedelta(days=100), not_after=now() - dt.timedelta(days=10))
    )
    wrong = lab.tls(lab.leaf(["someone-else.keychest.test"]))
    # scan_soon=False: this test queues through `manage.py scan` and beat (the first scan on
    # enrolment has its own test in test_scan_claims.py).
    good = server_enrol(team=people.team_a, host=f"{valid_name}:{valid.port}", ca_bundle=bundle, scan_soon=False)
    bad = server_enrol(team=people.team_a, host=f"{expired_name}:{expired.port}", ca_bundle=bundle, scan_soon=False)

    # `manage.py scan` (no --sync): the due servers are queued, the worker scans and stores.
    out = StringIO()
    call_command("scan", stdout=out)
    assert out.getvalue().strip() == "queued 2 servers"
    assert not ScanResult.objects.exists()  # nothing was scanned in this process
    wait_for(lambda: _scanned(good, bad) and _open_codes(bad) and not _claimed(good, bad), worker)
    assert _open_codes(good) == set()
    assert _open_codes(bad) == {"expired"}
    assert Finding.objects.get(server=bad, code="expired").severity == "critical"
    result = ScanResult.objects.get(server=good, current=True)
    assert result.trusted is True and result.names == [valid_name]
    for server in Server.objects.filter(pk__in=[good.pk, bad.pk]):
        assert server.next_scan_at > timezone.now()  # rescheduled by the worker's scan
        assert server.claimed_until is None

    # The beat task: claims only due servers (a new one) and queues them to the worker.
    mismatch = server_enrol(team=people.team_a, host=f"{wrong_name}:{wrong.port}", ca_bundle=bundle, scan_soon=False)
    scanned_before = {s.pk: s.last_scan_at for s in Server.objects.filter(pk__in=[good.pk, bad.pk])}
    from monitors.tasks import scan_due

    scan_due.delay()
    wait_for(lambda: "hostname_mismatch" in _open_codes(mismatch), worker)
    mismatch.refresh_from_db()
    assert mismatch.claimed_until is None and mismatch.next_scan_at > timezone.now()
    # The servers that were not due stayed untouched.
    assert {s.pk: s.last_scan_at for s in Server.objects.filter(pk__in=[good.pk, bad.pk])} == scanned_before
