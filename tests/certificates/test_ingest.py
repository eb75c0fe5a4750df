"""The real ingester against real local CT logs (RFC 6962 and static-ct-api) over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from certificates.models import Certificate, CertificateName, CertificateSource, CTLog, CTMalformedEntry
from certificates.services import certificates_for
from kcproto.x509 import parse_certificate
from tests.certificates.helpers import db_log, ingest, ingest_until_caught_up

pytestmark = pytest.mark.django_db(transaction=True)
APIS = ["rfc6962", "static"]


def _leaf_certificates() -> int:
    return Certificate.objects.filter(is_ca=False).count()


@pytest.mark.parametrize("api", APIS)
def test_it_ingests_every_entry_and_verifies_the_tree(local_logs, api: str) -> None:
    local = local_logs(api)
    issuance = local.issue(["www.shop.example", "*.shop.example", "xn--bcher-kva.example"])
    local.add_issuance(issuance)
    local.add_random(598)
    log = db_log(local)
    result = ingest(log)
    assert result.caught_up and not result.error
    log.refresh_from_db()
    assert log.position == local.published_size == 600
    assert log.verified_size == 600 and log.verified_root == local.tree.root(600).hex()
    assert CertificateSource.objects.filter(kind="ct").exclude(ref__endswith=":issuer").count() == 600
    assert _leaf_certificates() == 600
    # the issuing CAs from the chain are stored once, as CA certificates
    assert Certificate.objects.filter(is_ca=True).count() == 3
    pre, final = (parse_certificate(issuance.precertificate), parse_certificate(issuance.certificate))
    stored = Certificate.objects.get(sha256=final.sha256)
    assert Certificate.objects.get(sha256=pre.sha256).issuance_key == stored.issuance_key
    assert list(certificates_for("shop.example")) == [stored]
    assert set(CertificateName.objects.filter(certificate=stored).values_list("name", flat=True)) == {
        "www.shop.example",
        "*.shop.example",
        "xn--bcher-kva.example",
    }
    ref = CertificateSource.objects.get(certificate=stored, kind="ct").ref
    assert ref == f"{local.log_id}:1"


@pytest.mark.parametrize("api", APIS)
def test_a_new_log_starts_at_its_current_end(local_logs, api: str) -> None:
    local = local_logs(api)
    local.add_random(300)
    log = db_log(local, start=None)
    assert ingest(log).caught_up
    log.refresh_from_db()
    assert log.position == 300
    assert _leaf_certificates() == 0
    local.add_random(40)
    assert ingest(log).caught_up
    log.refresh_from_db()
    assert log.position == 340
    assert _leaf_certificates() == 40


@pytest.mark.parametrize("api", APIS)
def test_backfill_starts_at_the_requested_index(local_logs, api: str) -> None:
    local = local_logs(api)
    local.add_random(700)
    log = db_log(local, start=517)
    assert ingest(log).caught_up
    assert CertificateSource.objects.filter(kind="ct").exclude(ref__endswith=":issuer").count() == 700 - 517
    refs = CertificateSource.objects.filter(kind="ct").exclude(ref__endswith=":issuer").values_list("ref", flat=True)
    assert min(int(r.rsplit(":", 1)[1]) for r in refs) == 517


def test_short_batches_leave_no_gap(local_logs) -> None:
    local = local_logs("rfc6962", max_batch=37)
    local.faults.short_batches = True
    local.add_random(400)
    log = db_log(local)
    assert ingest(log).caught_up
    log.refresh_from_db()
    assert log.position == 400
    indexes = sorted(
        int(r.rsplit(":", 1)[1])
        for r in CertificateSource.objects.filter(kind="ct")
        .exclude(ref__endswith=":issuer")
        .values_list("ref", flat=True)
    )
    assert indexes == list(range(400))
    assert 1 <= log.batch_size <= 37


@pytest.mark.parametrize(("api", "fault"), [(a, f) for a in APIS for f in ("status_429", "status_500")])
def test_429_and_500_back_the_log_off_while_others_go_on(local_logs, ct_settings, api: str, fault: str) -> None:
    from certificates.ingest import ct_ingest_round

    ct_settings.KEYCHEST_CT_BACKOFF_SECONDS = 30

    sick, healthy = local_logs(api, api)
    for local in (sick, healthy):
        local.add_random(150)
    sick_log, healthy_log = db_log(sick), db_log(healthy)
    setattr(sick.faults, fault, 1)
    results = {r.log_id: r for r in ct_ingest_round()}
    assert results[healthy_log.pk].caught_up
    assert fault[-3:] in results[sick_log.pk].error
    sick_log.refresh_from_db()
    assert sick_log.consecutive_failures == 1
    assert sick_log.backoff_until - timezone.now() > timedelta(seconds=20)
    assert sick_log.last_error and not sick_log.halted_reason
    assert not sick_log.position
    # While backing off, the log is skipped; afterwards it catches up.
    assert sick_log.pk not in {r.log_id for r in ct_ingest_round() if r.entries or r.error}
    assert ingest_until_caught_up(sick_log)[-1].caught_up
    sick_log.refresh_from_db()
    assert sick_log.position == 150 and sick_log.consecutive_failures == 0 and sick_log.backoff_until is None


@pytest.mark.parametrize("api", APIS)
def test_a_malformed_entry_is_recorded_and_skipped(local_logs, api: str) -> None:
    local = local_logs(api)
    local.add_random(50)
    bad = local.add_malformed()
    local.add_random(50)
    log = db_log(local)
    result = ingest(log)
    assert result.caught_up and result.malformed == 1
    malformed = CTMalformedEntry.objects.get()
    assert (malformed.log_id, malformed.index) == (log.pk, bad)
    assert "malformed" in malformed.reason
    log.refresh_from_db()
    assert log.position == 101
    assert _leaf_certificates() == 100


@pytest.mark.parametrize("api", APIS)
def test_a_wrong_signature_halts_the_log_and_stores_nothing(local_logs, api: str) -> None:
    local = local_logs(api)
    local.add_random(120)
    log = db_log(local)
    local.faults.wrong_signature = True
    result = ingest(log)
    assert result.halted and "signature" in result.error
    log.refresh_from_db()
    assert log.halted_reason and not log.position
    assert Certificate.objects.count() == 0
    # a halted log stays halted until an operator resets it
    local.faults.wrong_signature = False
    assert ingest(log).entries == 0


@pytest.mark.parametrize("api", APIS)
def test_a_root_mismatch_stops_at_the_last_verified_point(local_logs, api: str) -> None:
    local = local_logs(api)
    local.add_random(300)
    log = db_log(local)
    assert ingest(log).caught_up
    local.add_random(300)
    local.faults.tampered = {456}
    result = ingest(log)
    assert result.halted and "Merkle" in result.error
    log.refresh_from_db()
    # chunks are 100 entries: [300, 400) verified and stored, the chunk holding 456 not at all
    assert log.position == 400
    refs = CertificateSource.objects.filter(kind="ct").exclude(ref__endswith=":issuer").values_list("ref", flat=True)
    assert max(int(r.rsplit(":", 1)[1]) for r in refs) == 399
    assert log.verified_size == 600


def test_a_truncated_tile_is_retried_after_backing_off(local_logs) -> None:
    local = local_logs("static")
    local.add_random(600)
    log = db_log(local)
    local.faults.truncated_tiles = 1
    first = ingest(log)
    assert "tile" in first.error and not first.halted
    log.refresh_from_db()
    assert log.consecutive_failures == 1
    assert ingest_until_caught_up(log)[-1].caught_up
    log.refresh_from_db()
    assert log.position == 600 and _leaf_certificates() == 600


@pytest.mark.parametrize("api", APIS)
def test_a_vanished_log_becomes_unhealthy_without_crashing(local_logs, api: str) -> None:
    local = local_logs(api)
    local.add_random(20)
    log = db_log(local)
    local.faults.vanished = True
    for _ in range(5):
        CTLog.objects.filter(pk=log.pk).update(backoff_until=None)
        result = ingest(log)
        assert "404" in result.error
    log.refresh_from_db()
    assert not log.healthy and log.consecutive_failures == 5
    assert "vanished" in log.last_error


@pytest.mark.parametrize("api", APIS)
def test_a_crash_mid_batch_resumes_with_no_gap_and_no_duplicate(local_logs, api: str) -> None:
    local = local_logs(api)
    local.add_random(350)
    log = db_log(local)
    calls = {"n": 0}

    def crash_on_second_chunk() -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        ingest(log, before_commit=crash_on_second_chunk)
    log.refresh_from_db()
    assert log.position == 100  # the first chunk committed, the second rolled back entirely
    assert CertificateSource.objects.filter(kind="ct").exclude(ref__endswith=":issuer").count() == 100
    assert ingest(log).caught_up
    refs = list(
        CertificateSource.objects.filter(kind="ct").exclude(ref__endswith=":issuer").values_list("ref", flat=True)
    )
    assert sorted(int(r.rsplit(":", 1)[1]) for r in refs) == list(range(350))
    assert _leaf_certificates() == 350
    assert Certificate.objects.filter(is_ca=True).count() == 3


def test_a_log_another_worker_holds_is_skipped(local_logs) -> None:
    from django.core.cache import cache

    from certificates.ingest import _lock_key

    local = local_logs("rfc6962")
    local.add_random(30)
    log = db_log(local)
    cache.add(_lock_key(log), 1, timeout=60)
    assert ingest(log).entries == 0
    cache.delete(_lock_key(log))
    assert ingest(log).caught_up
    assert not cache.get(_lock_key(log))


def test_a_worker_with_a_stale_position_commits_nothing(local_logs) -> None:
    from certificates.ingest import ct_log_ingest

    local = local_logs("static")
    local.add_random(30)
    log = db_log(local)
    assert ingest(log).caught_up
    local.add_random(30)
    stale = CTLog.objects.get(pk=log.pk)  # a worker read the log at position 30 ...
    CTLog.objects.filter(pk=log.pk).update(position=60)  # ... and another one moved it on meanwhile
    result = ct_log_ingest(stale)
    assert result.entries == 0 and "another worker" in result.error
    assert CertificateSource.objects.filter(kind="ct").exclude(ref__endswith=":issuer").count() == 30
