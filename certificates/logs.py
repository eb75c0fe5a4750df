"""The CT logs KeyChest reads: synchronised from the configured log list, enabled or disabled by hand."""

from __future__ import annotations

import base64
import contextlib
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from certificates.loglist import LogSpec, load_log_list
from certificates.models import CTLog


def ct_logs_sync(*, specs: list[LogSpec] | None = None) -> list[CTLog]:
    """Create or update a CTLog per log in the list (KEYCHEST_CT_LOG_LIST or the bundled snapshot).

    A new log is enabled when its state is readable (usable, qualified, readonly, pending) and
    starts at its current end on first contact. Logs that left the list are kept (their history
    is data) with `in_list=False` and disabled.
    """
    if specs is None:
        specs = load_log_list(
            settings.KEYCHEST_CT_LOG_LIST,
            timeout=settings.KEYCHEST_CT_TIMEOUT,
            allow_private=settings.KEYCHEST_ALLOW_PRIVATE_TARGETS,
        )
    seen: list[str] = []
    out: list[CTLog] = []
    with transaction.atomic():
        for spec in specs:
            seen.append(spec.log_id)
            log, created = CTLog.objects.get_or_create(
                log_id=spec.log_id,
                defaults={
                    "description": spec.description,
                    "operator": spec.operator,
                    "kind": spec.kind,
                    "url": spec.url,
                    "submission_url": spec.submission_url,
                    "public_key": spec.public_key,
                    "mmd": spec.mmd,
                    "list_state": spec.state,
                    "enabled": spec.readable,
                },
            )
            if not created:
                changed = {
                    "description": spec.description,
                    "operator": spec.operator,
                    "kind": spec.kind,
                    "url": spec.url,
                    "submission_url": spec.submission_url,
                    "mmd": spec.mmd,
                    "list_state": spec.state,
                    "in_list": True,
                }
                if not spec.readable:
                    changed["enabled"] = False
                CTLog.objects.filter(pk=log.pk).update(**changed)
                log.refresh_from_db()
            out.append(log)
        CTLog.objects.exclude(log_id__in=seen).update(in_list=False, enabled=False)
    return out


def ct_log_find(ident: str) -> CTLog | None:
    """A log by database id, log id (base64, or its hex/URL-safe forms, or a unique prefix) or URL."""
    ident = ident.strip()
    if ident.isdigit():
        found = CTLog.objects.filter(pk=int(ident)).first()
        if found:
            return found
    candidates = {ident, ident.replace("-", "+").replace("_", "/")}
    with contextlib.suppress(ValueError):
        candidates.add(base64.b64encode(bytes.fromhex(ident)).decode())
    exact = CTLog.objects.filter(Q(log_id__in=candidates) | Q(url=ident) | Q(url=ident.rstrip("/") + "/")).first()
    if exact:
        return exact
    prefixed = list(CTLog.objects.filter(log_id__startswith=ident)[:2])
    return prefixed[0] if len(prefixed) == 1 else None


def ct_log_set_enabled(*, log: CTLog, enabled: bool) -> CTLog:
    CTLog.objects.filter(pk=log.pk).update(enabled=enabled)
    log.refresh_from_db()
    return log


def ct_log_reset(*, log: CTLog, start_index: int | None = None) -> CTLog:
    """Clear a halt and errors. With `start_index`, (re)start reading at that index (backfill).

    Without it, the log keeps its position: after an operator has looked at why it halted.
    """
    fields: dict[str, object] = {
        "halted_reason": "",
        "last_error": "",
        "consecutive_failures": 0,
        "backoff_until": None,
    }
    if start_index is not None:
        fields.update(
            start_index=max(0, start_index), position=None, compact_range={}, verified_size=0, verified_root=""
        )
    CTLog.objects.filter(pk=log.pk).update(**fields)
    log.refresh_from_db()
    return log


def ct_log_describe(log: CTLog, now: datetime) -> str:
    """Where a log is, in one honest line: caught up, behind (how far, how long), backing off
    (until when, after how many failures, why), halted (why), read by which ingester, and how
    its starting point was found when that was unusual."""
    state = log.status(now)
    if state == "disabled":
        text = "disabled"
    elif state == "halted":
        text = f"halted: {log.halted_reason}"
    elif state == "backing-off" and log.backoff_until is not None:
        left = int((log.backoff_until - now).total_seconds()) + 1
        text = (
            f"backing off until {log.backoff_until:%H:%M:%S} UTC (in {left} s) after "
            f"{log.consecutive_failures} failure{'s' if log.consecutive_failures != 1 else ''}: {log.last_error}"
        )
    elif state == "unhealthy":
        text = f"failing ({log.consecutive_failures} failures in a row): {log.last_error}"
    elif state == "new":
        text = "not read yet"
    elif state == "caught-up":
        text = f"caught up at {log.position:,} of {log.sth_size:,}"
    else:
        lag = f", for {int(log.lag_seconds(now))} s" if log.behind_since else ""
        text = f"behind: at {log.position:,} of {log.sth_size:,} ({log.backlog:,} entries{lag})"
    holder = log.leased_to(now)
    if holder:
        text += f"; read by {holder}"
    if log.start_note:
        text += f"; {log.start_note}"
    return text
