"""Helpers for CT ingestion tests."""

from __future__ import annotations

from certificates.ingest import RoundResult, ct_log_ingest
from certificates.logs import ct_log_reset, ct_logs_sync
from certificates.models import CTLog
from lab.ctlog.server import LocalCTLog


def db_log(local: LocalCTLog, *, start: int | None = 0) -> CTLog:
    """The CTLog row of a local log after syncing the list; reading from `start` (None: its current end)."""
    ct_logs_sync()
    log = CTLog.objects.get(log_id=local.log_id)
    if start is not None:
        log = ct_log_reset(log=log, start_index=start)
    return log


def ingest(log: CTLog, **kwargs: object) -> RoundResult:
    log.refresh_from_db()
    return ct_log_ingest(log, **kwargs)  # type: ignore[arg-type]


def ingest_until_caught_up(log: CTLog, rounds: int = 20) -> list[RoundResult]:
    results = []
    for _ in range(rounds):
        CTLog.objects.filter(pk=log.pk).update(backoff_until=None)
        r = ingest(log)
        results.append(r)
        if r.caught_up or r.halted:
            break
    return results
