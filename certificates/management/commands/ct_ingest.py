"""Ingest CT logs: `--once` until every enabled log is caught up, otherwise forever."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from certificates.ingest import ct_ingest_round
from certificates.loglist import LogListError
from certificates.logs import ct_log_find, ct_logs_sync
from certificates.models import CTLog


class Command(BaseCommand):
    help = "Read Certificate Transparency logs into the certificate store."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--log", metavar="ID", help="only this log (id, log id or URL)")
        parser.add_argument("--once", action="store_true", help="stop when every enabled log is caught up")
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls when caught up")
        parser.add_argument(
            "--max-failures",
            type=int,
            default=5,
            help="with --once: give up on a log after this many consecutive failures",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            ct_logs_sync()
        except LogListError as exc:
            raise CommandError(str(exc)) from None
        log_pk = None
        if options["log"]:
            log = ct_log_find(options["log"])
            if log is None:
                raise CommandError(f"no such CT log: {options['log']}")
            log_pk = log.pk
        once = options["once"]
        while True:
            results = ct_ingest_round(log_pk=log_pk, max_seconds=settings.KEYCHEST_CT_INGEST_INTERVAL * 10)
            for r in results:
                if r.entries or r.error:
                    self.stdout.write(
                        f"log {r.log_id}: {r.entries} entries, {r.certificates_new} new certificates, "
                        f"{r.malformed} malformed, {r.events} events" + (f"; error: {r.error}" if r.error else "")
                    )
            if once and self._done(log_pk, options["max_failures"]):
                break
            pending = self._pending(log_pk)
            if once or pending:
                time.sleep(self._wait(log_pk))
            else:
                time.sleep(options["interval"])
        self.stdout.write("caught up")

    def _logs(self, log_pk: int | None) -> list[CTLog]:
        qs = CTLog.objects.filter(enabled=True, halted_reason="")
        return list(qs.filter(pk=log_pk) if log_pk else qs)

    def _pending(self, log_pk: int | None) -> bool:
        return any(log.position is None or log.backlog for log in self._logs(log_pk))

    def _done(self, log_pk: int | None, max_failures: int) -> bool:
        """Every enabled, healthy log caught up (or failing so persistently that --once gives up on it)."""
        for log in self._logs(log_pk):
            if log.consecutive_failures >= max_failures:
                continue
            if log.position is None or log.backlog or log.consecutive_failures:
                return False
        return True

    def _wait(self, log_pk: int | None) -> float:
        """Until the earliest back-off ends (at most a few seconds), or a moment if nobody backs off."""
        now = timezone.now()
        waits = [
            (log.backoff_until - now).total_seconds()
            for log in self._logs(log_pk)
            if log.backoff_until and log.backoff_until > now
        ]
        return min(max(0.05, min(waits)), 10.0) if waits else 0.05
