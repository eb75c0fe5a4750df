"""The fault drill's checks against its own database (issue 21)."""

from __future__ import annotations

import datetime as dt
from typing import Any


# --- checks against the drill's database ----------------------------------------------------------
def db_rows(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    except Exception:
        connection.close()  # the database restarted under us: reconnect on the next call
        raise


def scan_marks(ids: list[int]) -> dict[int, Any]:
    """Each server's last scan time now: a later scan (stored after this) moves it."""
    return dict(db_rows("SELECT id, last_scan_at FROM monitors_server WHERE id = ANY(%s)", (ids,)))


def scanned_since(marks: dict[int, Any]) -> int:
    """How many of the servers have stored a scan since `marks` were taken (a scan's time is its
    start, so a scan running at the mark and stored after it counts too)."""
    if not marks:
        return 0
    now = scan_marks(list(marks))
    return sum(1 for pk, before in marks.items() if now.get(pk) is not None and (before is None or now[pk] > before))


def claimed_now() -> list[int]:
    return [r[0] for r in db_rows("SELECT id FROM monitors_server WHERE claimed_until > now() AND removed_at IS NULL")]


def due_ids() -> list[int]:
    return [r[0] for r in db_rows("SELECT id FROM monitors_server WHERE removed_at IS NULL AND NOT paused")]


def pending_ids() -> list[int]:
    """Servers due or being scanned now: each must store a scan after a fault injected now."""
    return [
        r[0]
        for r in db_rows(
            "SELECT id FROM monitors_server WHERE removed_at IS NULL AND NOT paused "
            "AND (next_scan_at <= now() OR claimed_until > now())"
        )
    ]


def make_due(ids: list[int] | None = None) -> None:
    """Make servers due now (as their interval running out would), so the next beat pass claims them."""
    if ids is None:
        db_rows("UPDATE monitors_server SET next_scan_at = now() WHERE removed_at IS NULL RETURNING id")
    else:
        db_rows("UPDATE monitors_server SET next_scan_at = now() WHERE id = ANY(%s) RETURNING id", (ids,))


def now_db() -> dt.datetime:
    return db_rows("SELECT now()")[0][0]
