"""Celery tasks for scanning: thin wrappers over monitors/scanning.py, safe to run twice."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from monitors.issuance import caa_refresh
from monitors.registrations import registrations_check_due as check
from monitors.registrations import registrations_sync as sync
from monitors.scan_claims import claim_lease, token_parse
from monitors.scanning import scan_claimed, servers_claim_due
from monitors.services import served_certificates_ari_refresh
from monitors.services import spotchecks_purge as purge


@shared_task(ignore_result=True)
def scan_due() -> int:
    """Beat, every minute: claim due servers in batches and hand each batch to a worker."""
    batch = settings.KEYCHEST_SCAN_BATCH
    queued = 0
    # Bounded: at most 50 batches per pass, the next pass (a minute later) takes the rest.
    for _ in range(50):
        now, lease = timezone.now(), claim_lease()
        ids = servers_claim_due(limit=batch, now=now, lease=lease)
        if not ids:
            break
        scan_batch.delay(ids, (now + lease).isoformat())  # the claim's end is its token
        queued += len(ids)
    return queued


@shared_task(
    ignore_result=True,
    acks_late=True,  # a message handed out again finds its servers scanned or claimed: skipped
    autoretry_for=(OperationalError,),
    retry_backoff=10,
    retry_backoff_max=300,
    max_retries=5,
)
def scan_batch(server_ids: list[int], claimed_until: str | None = None) -> dict[str, Any]:
    """Scan a batch under its claim (beat's token `claimed_until`, or none: free servers)."""
    return scan_claimed(server_ids, token=token_parse(claimed_until)).as_dict()


@shared_task(ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=10, max_retries=3)
def scan_server_now(server_id: int) -> dict[str, Any]:
    return scan_claimed([server_id], force_dns=True).as_dict()


@shared_task(ignore_result=True)
def spotchecks_purge() -> int:

    return purge()


@shared_task(ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=30, max_retries=3)
def caa_refresh_task() -> int:
    """Beat, every ten minutes: read the CAA records of watched domains not read for 12 h."""

    return caa_refresh()


@shared_task(ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=30, max_retries=3)
def ari_refresh_task() -> dict[str, int]:
    """Beat, every ten minutes: the CA's renewal window (ARI) of certificates served on watched servers."""

    return served_certificates_ari_refresh()


@shared_task(ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=10, max_retries=3)
def registrations_sync() -> dict[str, int]:
    """Beat, every 15 minutes: registered domains and their watching teams follow servers and domains."""
    from dataclasses import asdict

    return asdict(sync())


@shared_task(ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=10, max_retries=3)
def registrations_check_due() -> dict[str, int]:
    """Beat, every 5 minutes: check the due registrations over RDAP (bounded; claims make reruns harmless)."""

    run = check()
    return {"claimed": run.claimed, "ok": run.ok, "not_found": run.not_found, "errors": run.errors}
