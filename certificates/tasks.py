"""Celery tasks of the certificate store: thin wrappers over the services, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task

from certificates.services import certificates_thin

logger = logging.getLogger(__name__)

# CT ingestion is not a task: the `ct` process (`manage.py ct_ingest --follow`,
# certificates/follower.py) follows every log and reads new entries as soon as they appear.


@shared_task(ignore_result=True)
def certificates_thin_task() -> int:
    return certificates_thin()
