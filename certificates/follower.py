"""Follow every CT log in real time: the `ct` process (`manage.py ct_ingest --follow`).

A team should hear of a new certificate for its domain seconds after a log publishes it. So
instead of a periodic batch, one long-running follower process:

- holds a lease on its share of the logs (certificates/leases.py), renewing it every few seconds;
  several followers split the logs between them, and a crashed one's logs are taken over as soon
  as its leases run out;
- runs one *tailer* thread per leased log, which reads the log's signed head at a cadence that
  fits the log (`Cadence`: every second for static-ct-api logs, whose checkpoint moves about
  every second; for a log that publishes every minute, mostly once it is due), and respects
  back-off and `Retry-After`;
- as soon as a head moves, hands the round to a small pool of database threads that fetch,
  verify and commit the new entries with their events (certificates/ingest.py); the events'
  deliveries are queued when that transaction commits (events/services.py).

Tailers only speak HTTP; every database statement runs on the pool (KEYCHEST_CT_FOLLOW_WORKERS
connections) or on the main thread (leases), so a follower of 100 logs needs a handful of
database connections, not 100.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from certificates.ctclient import CTClient
from certificates.ingest import READ_ERRORS, RoundResult, ct_log_ingest, ct_log_read_failed, make_client
from certificates.leases import (
    FOLLOWER,
    ct_follower_alive,
    ct_follower_gone,
    ct_leases_release,
    ct_leases_renew,
    ct_leases_share,
    ct_leases_take,
    ct_logs_mark_read,
    holder_new,
)
from certificates.loglist import LogListError
from certificates.logs import ct_logs_sync
from certificates.models import CTLog
from kcproto.ctformat import TreeHead

logger = logging.getLogger(__name__)
T = TypeVar("T")

# One database round of one log reads at most this long, so a log with a large backlog shares
# the pool with the others (its tailer hands the next round in at once).
ROUND_SECONDS = 5.0
LIST_REFRESH_SECONDS = 3600.0  # the log list changes a few times a year
RETRY_AFTER_BUG_SECONDS = 5.0  # after an unexpected error in a tailer or the database


@dataclass
class Cadence:
    """When to read a log's head next, learnt from when it changed.

    A log that publishes every P seconds is read every `minimum` seconds only once most of P has
    passed since its last change; until then it is left alone. A head that is late by L seconds
    is read again after L/4 (so a log that stopped publishing ends up read every `maximum`
    seconds), which adds at most a quarter of the lateness to the time we see it."""

    minimum: float
    maximum: float
    period: float | None = None
    changed_at: float | None = None

    def observe(self, changed: bool, now: float) -> None:
        if self.changed_at is None:
            self.changed_at = now  # the first look: when the log last moved is unknown
            return
        if changed:
            sample = now - self.changed_at
            self.period = sample if self.period is None else 0.7 * self.period + 0.3 * sample
            self.changed_at = now

    def delay(self, now: float) -> float:
        if self.changed_at is None:
            return self.minimum
        due = self.changed_at + 0.8 * (self.period or 0.0)
        wait = due - now if now < due else (now - due) / 4
        return max(self.minimum, min(self.maximum, wait))


class Tailer(threading.Thread):
    """Follows one log: reads its head (HTTP only) and hands new entries to the database pool."""

    def __init__(self, follower: Follower, log: CTLog) -> None:
        super().__init__(name=f"ct-tail-{log.pk}", daemon=True)
        self.follower, self.log = follower, log
        self.client: CTClient = make_client(log)
        self.cadence = Cadence(settings.KEYCHEST_CT_POLL_MIN_SECONDS, settings.KEYCHEST_CT_POLL_MAX_SECONDS)
        self._stop_requested = threading.Event()
        self._last_head: tuple[int, bytes] | None = None

    def stop(self) -> None:
        self._stop_requested.set()

    def run(self) -> None:
        wait = 0.0
        try:
            while not self._stop_requested.wait(wait):
                try:
                    wait = self._tick()
                except Exception:
                    logger.exception("CT tailer of %s failed; trying again", self.log.description)
                    wait = RETRY_AFTER_BUG_SECONDS
                if wait < 0:
                    break
        finally:
            self.client.close()

    def _tick(self) -> float:
        """One look at the log; returns seconds until the next one (negative: stop following it)."""
        backoff = self.log.backoff_until
        if backoff is not None and backoff > timezone.now():
            return (backoff - timezone.now()).total_seconds()
        seen_at = timezone.now()
        try:
            head = self.client.tree_head()
        except READ_ERRORS as exc:
            result = self.follower.db(ct_log_read_failed, log=self.log, error=exc)
            return -1.0 if result.halted else 0.0  # 0: look at the back-off it set
        now = time.monotonic()
        self.follower.mark_read(self.log.pk)
        current = (head.size, head.root)
        self.cadence.observe(current != self._last_head, now)
        if current == self._last_head:
            return self.cadence.delay(now)
        result = self.follower.db(self._round, head, seen_at)
        if result.skipped or result.halted:
            logger.info("no longer following CT log %s: %s", self.log.description, result.skipped or result.error)
            return -1.0
        if result.error:
            return 0.0  # backing off (or lost a race): the next look waits for what was recorded
        if not result.caught_up:
            return 0.0  # more to read than one round takes
        self._last_head = current
        return self.cadence.delay(time.monotonic())

    def _round(self, head: TreeHead, seen_at: Any) -> RoundResult:
        """On a database thread: what an operator changed meanwhile, then the round."""
        self.log.refresh_from_db()
        if self.log.lease_holder != self.follower.holder:
            return RoundResult(log_id=self.log.pk, skipped=f"its lease is held by {self.log.lease_holder or 'nobody'}")
        return ct_log_ingest(
            self.log,
            holder=self.follower.holder,
            client=self.client,
            head=head,
            seen_at=seen_at,
            max_seconds=ROUND_SECONDS,
        )


class Follower:
    """The `ct` process: leases, tailers, the database pool, the log list."""

    def __init__(self, *, log_pk: int | None = None) -> None:
        self.holder = holder_new(FOLLOWER)
        self.log_pk = log_pk
        self.tailers: dict[int, Tailer] = {}
        self.pool = ThreadPoolExecutor(max_workers=settings.KEYCHEST_CT_FOLLOW_WORKERS, thread_name_prefix="ct-db")
        self._stopping = threading.Event()
        self._read: set[int] = set()
        self._read_lock = threading.Lock()
        self._list_synced = 0.0

    # --- what tailers call -------------------------------------------------------------
    def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on a database thread and wait for it."""
        return self.pool.submit(_on_db_thread, fn, *args, **kwargs).result()

    def mark_read(self, log_pk: int) -> None:
        with self._read_lock:
            self._read.add(log_pk)

    # --- the main loop ---------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        interval = min(2.5, settings.KEYCHEST_CT_LEASE_SECONDS / 4)
        logger.info("CT follower %s started", self.holder)
        try:
            while not self._stopping.is_set():
                try:
                    self.step()
                except DatabaseError:
                    logger.exception("CT follower: database error; retrying")
                    connection.close()
                self._stopping.wait(interval)
        finally:
            self.shutdown()

    def step(self) -> None:
        """Sync the list when due, renew leases, drop lost or finished logs, take our share."""
        if time.monotonic() - self._list_synced > LIST_REFRESH_SECONDS:
            self._list_synced = time.monotonic()
            try:
                ct_logs_sync()
            except LogListError as exc:
                logger.warning("CT log list unavailable (following the logs already known): %s", exc)
        ct_follower_alive(holder=self.holder)
        held = ct_leases_renew(holder=self.holder, log_pks=self.tailers)
        with self._read_lock:
            read, self._read = self._read, set()
        ct_logs_mark_read(holder=self.holder, log_pks=read & held)
        for pk, tailer in list(self.tailers.items()):
            if pk not in held:
                logger.warning("CT follower lost the lease of log %s", tailer.log.description)
                tailer.stop()
            if not tailer.is_alive():
                del self.tailers[pk]
                ct_leases_release(holder=self.holder, log_pks=[pk])
        self._balance()

    def _balance(self) -> None:
        following = [pk for pk, t in self.tailers.items() if t.is_alive()]
        share = 1 if self.log_pk is not None else ct_leases_share(holder=self.holder)
        if len(following) > share:
            # Another follower joined: hand logs over (each lease is released once its tailer ended).
            for pk in following[share:]:
                self.tailers[pk].stop()
            return
        taken = ct_leases_take(
            holder=self.holder, want=share - len(following), exclude=list(self.tailers), log_pk=self.log_pk
        )
        for log in CTLog.objects.filter(pk__in=taken):
            tailer = Tailer(self, log)
            self.tailers[log.pk] = tailer
            tailer.start()
            logger.info("following CT log %s", log.description)

    def shutdown(self) -> None:
        for tailer in self.tailers.values():
            tailer.stop()
        deadline = time.monotonic() + 2 * ROUND_SECONDS + settings.KEYCHEST_CT_TIMEOUT
        for tailer in self.tailers.values():
            tailer.join(timeout=max(0.1, deadline - time.monotonic()))
        self.pool.shutdown(wait=True, cancel_futures=True)
        # Only the logs whose tailer ended: one still in a round keeps its lease until it runs out.
        done = [pk for pk, t in self.tailers.items() if not t.is_alive()]
        try:
            ct_leases_release(holder=self.holder, log_pks=done)
            ct_follower_gone(holder=self.holder)
        except DatabaseError:
            logger.warning("CT follower could not release its leases; they run out by themselves")
        logger.info("CT follower %s stopped", self.holder)


def _on_db_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except DatabaseError:
        connection.close()  # this thread's connection: the next job opens a fresh one
        raise
