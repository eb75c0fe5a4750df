"""The CT follower (`manage.py ct_ingest --follow`) as real processes against real local logs and
PostgreSQL: two followers share the logs and read every entry exactly once; a follower killed
with SIGKILL loses its logs to another within seconds; a clean stop gives the leases back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection

from certificates.follower import Cadence
from certificates.models import CertificateSource, CTFollower, CTLog
from monitors.domains import domain_watch
from notifications.models import Event
from tests.certificates.helpers import command_env, db_log

ROOT = Path(__file__).resolve().parents[2]
LEASE = 4  # seconds (KEYCHEST_CT_LEASE_SECONDS): short, so the tests are
needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="followers are separate processes sharing a database server"
)


def _wait_for(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds it took `condition` to hold; fails the test after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


@contextmanager
def _followers(count: int, env: dict[str, str], *, gap: float = 0.0) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "ct_ingest", "--follow"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            time.sleep(gap)
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def _env(ct_settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return command_env(
        ct_settings,
        KEYCHEST_CT_LEASE_SECONDS=str(LEASE),
        KEYCHEST_CT_POLL_MIN_SECONDS="0.2",
        KEYCHEST_CT_POLL_MAX_SECONDS="1",
        KEYCHEST_CT_CHUNK="40",
    )


def _indexes(log: CTLog) -> list[int]:
    refs = CertificateSource.objects.filter(kind="ct", ref__startswith=f"{log.log_id}:").exclude(
        ref__endswith=":issuer"
    )
    return sorted(int(r.rsplit(":", 1)[1]) for r in refs.values_list("ref", flat=True))


def _caught_up(local, log: CTLog) -> bool:  # type: ignore[no-untyped-def]
    return CTLog.objects.filter(pk=log.pk, position=local.published_size).exists()


@needs_postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_followers_share_the_logs_and_read_every_entry_once(local_logs, ct_settings, people) -> None:
    rfc, static = local_logs("rfc6962", "static", max_batch=32)
    for local in (rfc, static):
        local.add_random(60)
    logs = [db_log(rfc), db_log(static)]  # read from 0: every entry must arrive, once
    domain_watch(team=people.team_a, domain="follow.example")
    issued: list[str] = []

    def publish() -> None:  # both logs keep growing while the followers read them
        for i in range(25):
            for local in (rfc, static):
                names = [f"h{i}.{local.api}.follow.example"] if i % 5 == 0 else None
                if names:
                    local.add_issuance(local.issue(names))
                    issued.append(names[0])
                local.add_random(12)
            time.sleep(0.15)

    with _followers(2, _env(ct_settings), gap=1.0) as procs:
        publisher = threading.Thread(target=publish)
        publisher.start()
        publisher.join()
        _wait_for(
            lambda: all(_caught_up(lo, log) for lo, log in zip((rfc, static), logs, strict=True)), 90, "caught up"
        )
        # The second follower joined after the first had taken both logs: they end with one each.
        holders = lambda: {h for h in CTLog.objects.values_list("lease_holder", flat=True) if h}  # noqa: E731
        _wait_for(lambda: len(holders()) == 2, 30, "one log per follower")
        assert CTFollower.objects.count() == 2
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    # A clean stop gives the leases back at once (nobody waits for them to run out).
    assert set(CTLog.objects.values_list("lease_holder", flat=True)) == {""}
    assert CTFollower.objects.count() == 0
    for local, log in zip((rfc, static), logs, strict=True):
        log.refresh_from_db()
        # No gap, no double: each index once, and the position moved by exactly the log's size.
        assert _indexes(log) == list(range(local.published_size))
        assert log.entries_ingested == local.published_size and log.behind_since is None
    # One event per watched issuance (precertificate and certificate are one issuance).
    subjects = sorted(Event.objects.filter(kind="certificate_issued").values_list("subject", flat=True))
    assert subjects == sorted(issued)


@needs_postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_followers_log_is_taken_over_within_seconds(local_logs, ct_settings) -> None:
    local = local_logs("static")
    local.add_random(50)
    log = db_log(local)
    env = _env(ct_settings)
    with _followers(1, env) as [first]:
        _wait_for(lambda: _caught_up(local, log), 60, "the first follower caught up")
        holder = CTLog.objects.get(pk=log.pk).lease_holder
        assert holder.startswith("follow:") and f":{first.pid}:" in holder
        with _followers(1, env) as [second]:
            _wait_for(lambda: CTFollower.objects.count() == 2, 30, "the second follower is up")
            assert CTLog.objects.get(pk=log.pk).lease_holder == holder  # it waits: the log is held
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            killed = time.monotonic()
            local.add_random(30)
            took = _wait_for(
                lambda: CTLog.objects.filter(pk=log.pk, position=80).exclude(lease_holder=holder).exists(),
                60,
                "taken over and read",
            )
            new_holder = CTLog.objects.get(pk=log.pk).lease_holder
            assert f":{second.pid}:" in new_holder
    # The lease runs out LEASE seconds after the last renewal; the survivor looks every LEASE/4.
    assert took < LEASE + 4, f"taken over after {took:.1f} s"
    print(f"taken over and read {time.monotonic() - killed:.1f} s after the kill")
    log.refresh_from_db()
    assert _indexes(log) == list(range(80)) and log.entries_ingested == 80


@pytest.mark.django_db(transaction=True)
def test_make_runs_follower_idles_when_ingestion_is_off(local_logs, ct_settings) -> None:
    local = local_logs("static")
    local.add_random(5)
    db_log(local)
    env = {**_env(ct_settings), "KEYCHEST_CT_INGEST": "0"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "ct_ingest", "--follow", "--if-enabled"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "CT ingestion is switched off (KEYCHEST_CT_INGEST=0" in line
        time.sleep(1)
        assert proc.poll() is None and CTLog.objects.get(log_id=local.log_id).lease_holder == ""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_cadence_follows_how_often_a_log_publishes() -> None:
    every_second = Cadence(minimum=1.0, maximum=30.0)
    every_second.observe(True, 0.0)
    for t in range(1, 10):
        every_second.observe(True, float(t))
    assert every_second.delay(9.0) == 1.0  # a static-ct-api checkpoint: read it every second

    every_minute = Cadence(minimum=1.0, maximum=30.0)
    for t in (0.0, 60.0, 120.0, 180.0):
        every_minute.observe(True, t)
    assert every_minute.delay(181.0) == 30.0  # long before the next head: not asked every second
    assert every_minute.delay(220.0) == pytest.approx(8.0)  # until most of a period has passed
    assert every_minute.delay(230.0) == 1.0  # then every second until it moves
    assert every_minute.delay(252.0) == pytest.approx(6.0)  # late by 24 s: a quarter of that

    stopped = Cadence(minimum=1.0, maximum=30.0)
    stopped.observe(True, 0.0)  # first look; it never moves again (a read-only log)
    for t in range(1, 400):
        stopped.observe(False, float(t))
    assert stopped.delay(400.0) == 30.0
    assert Cadence(minimum=1.0, maximum=30.0).delay(0.0) == 1.0
