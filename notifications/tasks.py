"""Thin Celery tasks: they take ids, call a service, and are safe to run twice.

The state lives in rows (events, deliveries, report claims), so a lost or repeated task only
makes a send late, never lost or doubled; the beat sweeps below pick up whatever a queue lost.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from notifications.digests import digests_send_due
from notifications.reports import weekly_report_send_one, weekly_reports_send_due
from notifications.services import (
    channel_disabled_notify_owners,
    deliveries_send_due,
    delivery_send,
    events_dispatch,
)


@shared_task(name="notifications.tasks.events_dispatch_task", ignore_result=True)
def events_dispatch_task() -> int:
    return len(events_dispatch())


@shared_task(name="notifications.tasks.delivery_send_task", ignore_result=True)
def delivery_send_task(delivery_id: int) -> str:
    return delivery_send(delivery_id=delivery_id)


@shared_task(name="notifications.tasks.deliveries_send_due_task", ignore_result=True)
def deliveries_send_due_task() -> dict[str, int]:
    events_dispatch()
    return deliveries_send_due()


@shared_task(
    name="notifications.tasks.channel_disabled_email_task",
    ignore_result=True,
    autoretry_for=(OSError,),
    retry_backoff=60,
    retry_backoff_max=600,  # within KEYCHEST_MAX_COUNTDOWN (the broker visibility timeout)
    max_retries=30,
)
def channel_disabled_email_task(channel_id: int) -> None:
    channel_disabled_notify_owners(channel_id=channel_id)


@shared_task(name="notifications.tasks.weekly_reports_send_due_task", ignore_result=True)
def weekly_reports_send_due_task(shard: int | None = None, shards: int | None = None) -> dict[str, Any]:
    """Without a shard: fan out one task per shard (KEYCHEST_WEEKLY_REPORT_SHARDS) so that
    several workers share the sweep; with one: sweep that shard's users."""
    count = shards or settings.KEYCHEST_WEEKLY_REPORT_SHARDS
    if shard is None and count > 1:
        for index in range(count):
            weekly_reports_send_due_task.apply_async(args=(index, count))
        return {"shards": count}
    # Stop before the task time limit; the next beat run continues where this one stopped.
    budget = max(60, settings.CELERY_TASK_SOFT_TIME_LIMIT - 120)
    return weekly_reports_send_due(shard=(shard, count) if shard is not None else None, time_budget=budget).as_dict()


@shared_task(name="notifications.tasks.weekly_report_send_task", ignore_result=True)
def weekly_report_send_task(user_id: int) -> str:
    return weekly_report_send_one(user_id=user_id)


@shared_task(name="notifications.tasks.digests_send_due_task", ignore_result=True)
def digests_send_due_task() -> dict[str, int]:
    return digests_send_due()
