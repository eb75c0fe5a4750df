"""Recording events. Call these inside the transaction that makes the change."""

from __future__ import annotations

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
    return len(rows)
