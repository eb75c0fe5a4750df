"""When a certificate is due for renewal: fractions of its own lifetime, not fixed day counts.

The one rule of KeyChest (scanner findings, reports, dashboard, API and certificate store all
use it). Lifetimes shrink (398 -> 200 -> 100 -> 47 days; 90, 64, 45 and 6 days at Let's
Encrypt), so a fixed "30 days" threshold would be wrong for most of them:

- due: a third of the lifetime or less is left (ACME clients renew then);
- overdue: a sixth or less is left, and at most two weeks — a renewal has failed. The cap
  keeps long certificates sane: a 398-day certificate with 30 days left is planned (due), not
  overdue, while a 6-day certificate with less than a day left is overdue (PRODUCT.md).

Per-team and per-server overrides replace the fractions; the two-week cap stays.
"""

from __future__ import annotations

from datetime import datetime, timedelta

DUE_FRACTION = 1 / 3
OVERDUE_FRACTION = 1 / 6
OVERDUE_CAP = timedelta(days=14)


def days_left(not_after: datetime, now: datetime) -> float:
    return (not_after - now).total_seconds() / 86400


def overdue_threshold(lifetime: timedelta, *, overdue_fraction: float | None = None) -> timedelta:
    fraction = OVERDUE_FRACTION if overdue_fraction is None else overdue_fraction
    return min(lifetime * fraction, OVERDUE_CAP)


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
    lifetime = not_after - not_before
    left = not_after - now
    due = DUE_FRACTION if due_fraction is None else due_fraction
    if lifetime <= timedelta(0):
        return "overdue"
    # Boundaries count: a 6-day certificate with exactly 1 day left is overdue (PRODUCT.md), a
    # 90-day one with exactly 30 days left is due (when ACME clients renew).
    if left <= overdue_threshold(lifetime, overdue_fraction=overdue_fraction):
        return "overdue"
    if left <= lifetime * due:
        return "due"
    return "ok"


# The states in which a certificate needs renewing now (the API's and reports' "renewal_due").
NEEDS_RENEWAL = frozenset({"due", "overdue", "expired"})


def renewal_needed(
    not_before: datetime,
    not_after: datetime,
    now: datetime,
    *,
    due_fraction: float | None = None,
    overdue_fraction: float | None = None,
) -> bool:
    """True when renewal is due, overdue or the certificate expired."""
    state = renewal_state(not_before, not_after, now, due_fraction=due_fraction, overdue_fraction=overdue_fraction)
    return state in NEEDS_RENEWAL


def renewal_at(not_before: datetime, not_after: datetime, *, due_fraction: float | None = None) -> datetime:
    """The moment the certificate becomes due (what `renewal_utc` reports)."""
    due = DUE_FRACTION if due_fraction is None else due_fraction
    return not_after - (not_after - not_before) * due
