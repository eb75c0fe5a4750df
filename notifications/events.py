"""Recording events. Call these inside the transaction that makes the change."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from notifications.models import Event, Severity

if TYPE_CHECKING:
    from keychest.accounts.models import Team


@dataclass(frozen=True)
class NewEvent:
    """An event to record; `team_id` rather than a Team so CT matching needs no team look-up."""

    team_id: int
    kind: str
    subject: str
    dedup_key: str
    payload: dict[str, Any] = field(default_factory=dict)
    severity: str = Severity.INFO
    occurred_at: datetime | None = None


_recent = threading.local()


def _dispatch_soon() -> None:
    """Ask a worker to dispatch new events right after commit (real-time alerts).

    At most once a second per thread, so a loop of `event_record` calls queues one task; a
    missed or rolled-back request costs nothing, the 30-second sweep dispatches the rows anyway.
    """
    now = time.monotonic()
    if now - getattr(_recent, "at", -10.0) < 1.0:
        return
    _recent.at = now
    from notifications import tasks
    from notifications.services import enqueue_after_commit

    enqueue_after_commit(tasks.events_dispatch_task)


def event_record(
    *,
    team: Team,
    kind: str,
    subject: str,
    dedup_key: str,
    payload: dict[str, Any] | None = None,
    severity: str = Severity.INFO,
    occurred_at: datetime | None = None,
) -> Event | None:
    """Record one event; None when an event with this dedup key already exists for the team."""
    event, created = Event.objects.get_or_create(
        team=team,
        dedup_key=dedup_key[:300],
        defaults={
            "kind": kind,
            "subject": subject[:300],
            "payload": payload or {},
            "severity": severity,
            "occurred_at": occurred_at or timezone.now(),
        },
    )
    if created:
        _dispatch_soon()
    return event if created else None


def events_record_bulk(events: Iterable[NewEvent]) -> int:
    """Record many events in one statement, skipping those already recorded; returns rows sent."""
    now = timezone.now()
    rows = [
        Event(
            team_id=e.team_id,
            kind=e.kind,
            subject=e.subject[:300],
            dedup_key=e.dedup_key[:300],
            payload=e.payload,
            severity=e.severity,
            occurred_at=e.occurred_at or now,
        )
        for e in events
    ]
    if rows:
        Event.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
        _dispatch_soon()
    return len(rows)
