"""Thin Celery tasks of the API app."""

from __future__ import annotations

from celery import shared_task

from api.services import claims_expire


@shared_task(name="api.tasks.claims_expire")
def claims_expire_task() -> int:
    """Expire unconfirmed keys past their window (safe to run twice)."""
    return claims_expire()
