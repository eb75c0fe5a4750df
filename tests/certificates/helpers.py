"""Helpers for CT ingestion tests."""

from __future__ import annotations

import os
from typing import Any

from django.db import connection

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


def command_env(ct_settings: Any, **extra: str) -> dict[str, str]:
    """The environment of a `manage.py` subprocess on this test's database and local logs."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "keychest.settings_test",
        "DATABASE_URL": f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "KEYCHEST_CT_LOG_LIST": ct_settings.KEYCHEST_CT_LOG_LIST,
        "KEYCHEST_CT_BACKOFF_SECONDS": "0",
        "KEYCHEST_ALLOW_PRIVATE_TARGETS": "1",  # the local logs listen on 127.0.0.1
        **extra,
    }
