"""Celery tasks of the agents app: thin, safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from agents.services import agents_silent_check


@shared_task(ignore_result=True, autoretry_for=(OperationalError,), retry_backoff=10, max_retries=3)
def agents_silent_check_task() -> int:
    """Beat, every minute: raise `agent_silent` for agents silent for twice their cadence."""
    return agents_silent_check()
