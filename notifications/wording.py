"""The words of alerts: event labels, the one-line summary, which events a message lists.

Shared by every transport and the alert email; plain functions of event rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from events.models import Event, EventKind

# A message lists at most this many events and counts the rest ("and 250 more").
MAX_LISTED = 50


def kind_label(kind: str) -> str:
    try:
        return str(EventKind(kind).label)
    except ValueError:
        return kind.replace("_", " ")


# A finding event and the specific event the scanner records next to it describe one thing.
_SPECIFIC_FOR_FINDINGS = {
    EventKind.IPS_DISAGREE,
    EventKind.NEWER_CERTIFICATE_NOT_DEPLOYED,
    EventKind.SERVER_DOWN,
    EventKind.SERVER_RECOVERED,
}


def collapse(events: Sequence[Event]) -> list[Event]:
    """Drop generic finding_opened/resolved events whose finding also has a specific event."""
    specific = {
        str(e.payload.get("finding"))
        for e in events
        if e.kind in _SPECIFIC_FOR_FINDINGS and isinstance(e.payload, dict) and e.payload.get("finding")
    }
    return [
        e
        for e in events
        if not (
            e.kind in (EventKind.FINDING_OPENED, EventKind.FINDING_RESOLVED)
            and isinstance(e.payload, dict)
            and str(e.payload.get("finding")) in specific
        )
    ]


def event_label(event: Event) -> str:
    """The kind, plus the finding code for generic finding events (codes are our own words)."""
    label = kind_label(event.kind)
    code = event.payload.get("code") if isinstance(event.payload, dict) else None
    if event.kind == EventKind.FINDING_OPENED and code in EXPIRY_LABELS:
        return EXPIRY_LABELS[code]
    if event.kind in (EventKind.FINDING_OPENED, EventKind.FINDING_RESOLVED) and isinstance(code, str):
        return f"{label}: {code.replace('_', ' ')[:60]}"
    return label


# The scanner reports expiry as findings; alerts name them as what they are.
EXPIRY_LABELS = {
    "renewal_due": "Certificate expiring (renewal due)",
    "renewal_overdue": "Certificate expiring (renewal overdue)",
    "expired": "Certificate expired",
}


def summary_line(team_name: str, events: Sequence[Event], *, test: bool = False) -> str:
    """One line for a subject or a chat message: what happened, counted by kind.

    Never the event subjects: they come from certificates and remote servers, and this line
    becomes an email Subject header.
    """
    if test:
        return f"Test message for {team_name}"
    counts = Counter(e.alert_kind for e in events)
    parts = [f"{n} x {kind_label(kind)}" if n > 1 else kind_label(kind) for kind, n in counts.most_common()]
    if len(events) == 1:
        return f"{kind_label(events[0].alert_kind)} ({team_name})"
    return f"{len(events)} alerts for {team_name}: " + ", ".join(parts)
