"""Celery tasks of IP-range discovery: thin, safe to run twice (claims make a rerun harmless)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from discovery.services import ranges_sweep_due


@shared_task(ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=30, max_retries=3)
def sweep_due() -> int:
    """Beat, every five minutes: sweep the due ranges together, under one global rate limit
    (a pass still running elsewhere makes this one a no-op)."""
    return ranges_sweep_due()
