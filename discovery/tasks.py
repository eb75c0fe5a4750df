"""Celery tasks of IP-range discovery: thin, safe to run twice (claims make a rerun harmless)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from discovery.services import ranges_claim_due, ranges_sweep


@shared_task(ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=30, max_retries=3)
def sweep_due() -> int:
    """Beat, every five minutes: sweep the due ranges together, under one global rate limit."""
    ids = ranges_claim_due()
    if ids:
        ranges_sweep(ids)
    return len(ids)
