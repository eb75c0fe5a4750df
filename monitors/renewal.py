"""When a certificate is due for renewal: fractions of its own lifetime, not fixed day counts.

Lifetimes shrink (398 -> 200 -> 100 -> 47 days; 90, 64, 45 and 6 days at Let's Encrypt), so a
fixed "30 days" threshold would be wrong for most of them. ACME clients renew with a third of
the lifetime left; we call that "due", and a sixth left "overdue".
"""

from __future__ import annotations

from datetime import datetime

DUE_FRACTION = 1 / 3
OVERDUE_FRACTION = 1 / 6


def days_left(not_after: datetime, now: datetime) -> float:
    return (not_after - now).total_seconds() / 86400


def renewal_state(
    not_before: datetime,
    not_after: datetime,
    now: datetime,
    *,
    due_fraction: float | None = None,
    overdue_fraction: float | None = None,
) -> str:
    """One of "not_yet_valid", "ok", "due", "overdue", "expired"."""
    if now >= not_after:
        return "expired"
    if now < not_before:
        return "not_yet_valid"
    lifetime = (not_after - not_before).total_seconds()
    left = (not_after - now).total_seconds()
    due = DUE_FRACTION if due_fraction is None else due_fraction
    overdue = OVERDUE_FRACTION if overdue_fraction is None else overdue_fraction
    if lifetime <= 0:
        return "overdue"
    if left < lifetime * overdue:
        return "overdue"
    if left < lifetime * due:
        return "due"
    return "ok"


def renewal_at(not_before: datetime, not_after: datetime, *, due_fraction: float | None = None) -> datetime:
    """The moment the certificate becomes due (what `renewal_utc` reports)."""
    due = DUE_FRACTION if due_fraction is None else due_fraction
    return not_after - (not_after - not_before) * due
