"""Recording events. Call these inside the transaction that makes the change.

What happens after a transaction recorded events (notifications queues its dispatcher) is
registered at start-up with `events_subscribe`, so this module imports nothing above it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from events.models import Event, Severity

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


MARKER = "keychest_events_dispatch"
_subscribers: list[Callable[[], None]] = []


def events_subscribe(callback: Callable[[], None]) -> None:
    """Run `callback` after each commit that recorded events (registered in an AppConfig.ready)."""
    if callback not in _subscribers:
        _subscribers.append(callback)


def _dispatch_soon() -> None:
    """Tell the subscribers right after commit that new events exist (real-time alerts).

    Once per transaction: a loop of `event_record` calls queues one callback. If the transaction
    (or the savepoint holding the request) rolls back, the callback goes with it; the 30-second
    sweep dispatches whatever rows exist anyway.
    """
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(getattr(entry[1], MARKER, False) for entry in connection.run_on_commit):
        return

    def notify_subscribers() -> None:
        for callback in _subscribers:
            callback()

    setattr(notify_subscribers, MARKER, True)  # lets the next record in this transaction see it asked
    transaction.on_commit(notify_subscribers)


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
