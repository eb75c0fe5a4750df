"""The renewal rule lives in `certificates.renewal` (one rule for every app); re-exported here
for the scanner's modules."""

from __future__ import annotations

from certificates.renewal import (
    DUE_FRACTION,
    NEEDS_RENEWAL,
    OVERDUE_CAP,
    OVERDUE_FRACTION,
    days_left,
    overdue_threshold,
    renewal_at,
    renewal_state,
)

__all__ = [
    "DUE_FRACTION",
    "NEEDS_RENEWAL",
    "OVERDUE_CAP",
    "OVERDUE_FRACTION",
    "days_left",
    "overdue_threshold",
    "renewal_at",
    "renewal_state",
]
