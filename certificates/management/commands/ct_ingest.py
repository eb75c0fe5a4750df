"""Read CT logs: `--follow` them as the `ct` process does, or `--once` until every enabled log is
caught up (then say, log by log, what is caught up and what is not, and why)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from certificates.follower import Follower
from certificates.ingest import ct_ingest_round
from certificates.loglist import LogListError
from certificates.logs import ct_log_describe, ct_log_find, ct_logs_sync
from certificates.models import CTLog

ONCE_ROUND_SECONDS = 300.0


class Command(BaseCommand):
    help = "Read Certificate Transparency logs into the certificate store (follow them, or catch up --once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--log", metavar="ID", help="only this log (id, log id or URL)")
        parser.add_argument("--once", action="store_true", help="stop when every enabled log is caught up")
        parser.add_argument(
            "--follow",
            action="store_true",
            help="follow the logs until stopped, reading new entries as soon as they appear (the default)",
        )
        parser.add_argument(
            "--if-enabled",
            action="store_true",
            help="with --follow: follow only when KEYCHEST_CT_INGEST is on, else say so and idle (make run)",
        )
        parser.add_argument(
            "--interval", type=float, default=5.0, help="unused: each log is read at its own cadence (kept for scripts)"
        )
        parser.add_argument(
            "--max-failures",
            type=int,
            default=5,
            help="with --once: give up on a log after this many consecutive failures",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"] and options["follow"]:
            raise CommandError("--once and --follow exclude each other")
        try:
            ct_logs_sync()
        except LogListError as exc:
            if options["once"] or options["log"]:
                raise CommandError(str(exc)) from None
            self.stderr.write(f"CT log list unavailable, following the logs already known: {exc}")
        log_pk = None
        if options["log"]:
            log = ct_log_find(options["log"])
            if log is None:
                raise CommandError(f"no such CT log: {options['log']}")
            log_pk = log.pk
        if options["once"]:
            self._once(log_pk, options["max_failures"])
        else:
            self._follow(log_pk, if_enabled=options["if_enabled"])

    # --- --follow --------------------------------------------------------------------------
    def _follow(self, log_pk: int | None, *, if_enabled: bool) -> None:
        from django.conf import settings

        stop = threading.Event()
        follower = Follower(log_pk=log_pk)

        def on_signal(*_: object) -> None:
            stop.set()
            follower.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        if if_enabled and not settings.KEYCHEST_CT_INGEST:
            self.stdout.write(
                "CT ingestion is switched off (KEYCHEST_CT_INGEST=0, the default with DEBUG=1): not following"
                " any log. Set KEYCHEST_CT_INGEST=1 (and KEYCHEST_CT_LOG_LIST, e.g. to a lab log) to follow."
            )
            self.stdout.flush()
            stop.wait()
            return
        self.stdout.write(f"following CT logs as {follower.holder} (Ctrl-C or SIGTERM stops)")
        self.stdout.flush()
        follower.run()

    # --- --once ----------------------------------------------------------------------------
    def _once(self, log_pk: int | None, max_failures: int) -> None:
        while True:
            for r in ct_ingest_round(log_pk=log_pk, max_seconds=ONCE_ROUND_SECONDS):
                if r.start_note:
                    self.stdout.write(f"log {r.log_id}: {r.start_note}")
                if r.entries or r.error:
                    self.stdout.write(
                        f"log {r.log_id}: {r.entries} entries, {r.certificates_new} new certificates, "
                        f"{r.malformed} malformed, {r.events} events" + (f"; error: {r.error}" if r.error else "")
                    )
            if self._done(log_pk, max_failures):
                break
            time.sleep(self._wait(log_pk))
        self._report(log_pk, max_failures)

    def _logs(self, log_pk: int | None) -> list[CTLog]:
        qs = CTLog.objects.filter(enabled=True)
        return list(qs.filter(pk=log_pk) if log_pk else qs.order_by("pk"))

    def _done(self, log_pk: int | None, max_failures: int) -> bool:
        """Every enabled log caught up (by us or by the ingester holding it), halted, or failing so
        persistently that --once gives up on it. A log another ingester holds and has not caught
        up is waited for: a live follower catches up, a dead one's lease runs out and we read it."""
        for log in self._logs(log_pk):
            if log.halted_reason or log.consecutive_failures >= max_failures:
                continue
            if log.position is None or log.backlog or log.consecutive_failures:
                return False
        return True

    def _wait(self, log_pk: int | None) -> float:
        """Until the earliest back-off ends (at most a few seconds), or a moment if nobody backs off."""
        now = timezone.now()
        logs = self._logs(log_pk)
        waits = [
            (log.backoff_until - now).total_seconds() for log in logs if log.backoff_until and log.backoff_until > now
        ]
        if any(log.leased_to(now) for log in logs):
            waits.append(0.5)  # another ingester holds one: look again shortly, not in a tight loop
        return min(max(0.05, min(waits)), 10.0) if waits else 0.05

    def _report(self, log_pk: int | None, max_failures: int) -> None:
        """One line per log saying where it is; an error exit unless every log is caught up (or
        followed by another ingester that is reading it right now)."""
        now = timezone.now()
        not_caught_up: list[str] = []
        for log in self._logs(log_pk):
            state = log.status(now)
            line = ct_log_describe(log, now)
            if log.consecutive_failures >= max_failures and state not in ("halted", "backing-off"):
                line += f" (gave up after {log.consecutive_failures} failures)"
            self.stdout.write(f"log {log.pk} ({log.description}): {line}")
            if state != "caught-up" and not log.leased_to(now):
                not_caught_up.append(state)
        if not_caught_up:
            kinds = ", ".join(f"{not_caught_up.count(k)} {k}" for k in sorted(set(not_caught_up)))
            raise CommandError(f"not caught up: {len(not_caught_up)} of {len(self._logs(log_pk))} logs ({kinds})")
        self.stdout.write("caught up")
