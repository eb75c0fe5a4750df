"""List the CT logs with their ingestion state; enable, disable, reset or backfill one."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from certificates.loglist import LogListError
from certificates.logs import ct_log_describe, ct_log_find, ct_log_reset, ct_log_set_enabled, ct_logs_sync
from certificates.models import CTLog


class Command(BaseCommand):
    help = "List CT logs (from KEYCHEST_CT_LOG_LIST or the bundled list) with their state."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument("--no-sync", action="store_true", help="do not re-read the log list first")
        parser.add_argument("--enable", metavar="ID", help="enable a log (id, log id or URL)")
        parser.add_argument("--disable", metavar="ID", help="disable a log")
        parser.add_argument("--reset", metavar="ID", help="clear a halted log's error and resume where it was")
        parser.add_argument(
            "--start-at", nargs=2, metavar=("ID", "INDEX"), help="(re)start a log at INDEX (backfill from there)"
        )

    def _find(self, ident: str) -> CTLog:
        log = ct_log_find(ident)
        if log is None:
            raise CommandError(f"no such CT log: {ident}")
        return log

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_sync"]:
            try:
                ct_logs_sync()
            except LogListError as exc:
                raise CommandError(str(exc)) from None
        if options["enable"]:
            ct_log_set_enabled(log=self._find(options["enable"]), enabled=True)
        if options["disable"]:
            ct_log_set_enabled(log=self._find(options["disable"]), enabled=False)
        if options["reset"]:
            ct_log_reset(log=self._find(options["reset"]))
        if options["start_at"]:
            ident, index = options["start_at"]
            try:
                start = int(index)
            except ValueError:
                raise CommandError("INDEX must be a number") from None
            ct_log_reset(log=self._find(ident), start_index=start)
        now = timezone.now()
        rows = [
            {
                "id": log.pk,
                "log_id": log.log_id,
                "description": log.description,
                "operator": log.operator,
                "api": log.kind,
                "url": log.url,
                "list_state": log.list_state,
                "in_list": log.in_list,
                "enabled": log.enabled,
                "status": log.status(now),
                "position": log.position,
                "tree_size": log.sth_size,
                "backlog": log.backlog,
                "entries_ingested": log.entries_ingested,
                "malformed_entries": log.malformed_entries.count(),
                "last_success_at": log.last_success_at.isoformat() if log.last_success_at else None,
                "last_error": log.last_error,
                "halted_reason": log.halted_reason,
                "backoff_until": log.backoff_until.isoformat() if log.backoff_until else None,
                "backoff_seconds_left": (
                    round((log.backoff_until - now).total_seconds(), 1)
                    if log.backoff_until and log.backoff_until > now
                    else 0
                ),
                "consecutive_failures": log.consecutive_failures,
                "lag_seconds": round(log.lag_seconds(now), 1),
                "read_by": log.leased_to(now),
                "lease_until": log.lease_until.isoformat() if log.leased_to(now) and log.lease_until else None,
                "start_note": log.start_note,
                "summary": ct_log_describe(log, now),
            }
            for log in CTLog.objects.order_by("operator", "description", "id")
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for r in rows:
            position = "-" if r["position"] is None else f"{r['position']}/{r['tree_size']}"
            self.stdout.write(
                f"{r['id']:>4}  {r['status']:<11} {r['api']:<8} {position:>21}  {r['description']}  [{r['log_id']}]"
            )
            self.stdout.write(f"      {r['summary']}")
