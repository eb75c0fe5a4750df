"""Celery tasks of the certificate store: thin wrappers over the services, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from certificates.ingest import ct_ingest_round
from certificates.loglist import LogListError
from certificates.logs import ct_logs_sync
from certificates.services import certificates_thin

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def ct_ingest_task() -> int:
    """One ingestion pass over every due log (beat runs it every KEYCHEST_CT_INGEST_INTERVAL s)."""
    try:
        ct_logs_sync()
    except LogListError as exc:
        # Keep reading the logs we know; the list is retried on the next tick.
        logger.warning("CT log list unavailable: %s", exc)
    # Leave room before the task's time limit: the next beat tick continues where this stopped.
    budget = max(5.0, settings.CELERY_TASK_SOFT_TIME_LIMIT * 0.8)
    return sum(r.entries for r in ct_ingest_round(max_seconds=budget))


@shared_task(ignore_result=True)
def certificates_thin_task() -> int:
    return certificates_thin()
