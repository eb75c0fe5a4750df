"""Claims on servers while one worker scans them: no server is scanned twice at once, and a
killed worker's servers are scanned again within minutes (docs/reliability.md).

A claim is the `Server.claimed_until` column. Beat's `scan_due` claims due servers for one lease
(`claim_lease()`, 40 s by default) and puts the lease's end in the batch message as its token.
The worker that runs the batch takes the servers over (`ScanClaim.take`: only those still held
under that token, or free and due), renews the lease every quarter lease while it scans
(`ScanClaim.renewing`), and the scan's own transaction stores only the servers it still holds
(`ScanClaim.held`, row locks) and clears the claim. A worker that dies stops renewing: its
servers are free one lease later, and beat's next pass (every minute) queues them again. A
message the broker hands out again later (Redis visibility timeout) finds its servers scanned
or held by the new batch, and skips them.

New servers are queued right after the enrolment commits (`scans_queue_after_commit`), so their
first scan starts within seconds instead of at beat's next pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from monitors.models import Server

logger = logging.getLogger(__name__)

# The Celery task that scans a batch; looked up by name so that this domain module does not
# import the task module (an interface) above it.
SCAN_BATCH_TASK = "monitors.tasks.scan_batch"
MARKER = "keychest_first_scans"
# The default lease: a running scan renews it every quarter lease, so it only runs out when the
# scan's worker is gone. KEYCHEST_SCAN_CLAIM_LEASE (seconds) sets it.
CLAIM_LEASE = timedelta(seconds=40)


def claim_lease() -> timedelta:
    """How long a claim holds without renewal (KEYCHEST_SCAN_CLAIM_LEASE seconds)."""
    seconds = getattr(settings, "KEYCHEST_SCAN_CLAIM_LEASE", None)
    return timedelta(seconds=float(seconds)) if seconds else CLAIM_LEASE


def token_parse(value: str | None) -> datetime | None:
    """A claim token from a task message (ISO 8601), or None for a message without one."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class ScanClaim:
    """The servers one scan holds, and the current end of its lease (also its token)."""

    ids: list[int]
    until: datetime
    lease: timedelta
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def take(
        cls,
        server_ids: Iterable[int],
        *,
        token: datetime | None,
        now: datetime | None = None,
        lease: timedelta | None = None,
    ) -> ScanClaim:
        """Take over the servers a batch names, atomically.

        With a token (beat's claim): the servers still held under it, and free servers that are
        due (their claim ran out, nobody took them yet). Without one (`manage.py scan`, a first
        scan, "scan now"): every free server. Servers another live claim holds, and servers a team
        agent scans, are left alone.
        """
        now = now or timezone.now()
        lease = lease or claim_lease()
        free = Q(claimed_until=None) | Q(claimed_until__lt=now)
        ours = (Q(claimed_until=token) | (free & Q(next_scan_at__lte=now))) if token is not None else free
        until = now + lease
        with transaction.atomic():
            taken = list(
                # A server a team agent scans is never taken by the SaaS's workers (agents/).
                Server.objects.filter(pk__in=list(server_ids), removed_at=None, agent=None)
                .filter(ours)
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)
            )
            if taken:
                Server.objects.filter(pk__in=taken).update(claimed_until=until)
        return cls(ids=sorted(taken), until=until, lease=lease)

    def renew(self, now: datetime | None = None) -> int:
        """Push the lease end forward for the servers still held; returns how many are."""
        with self._lock:
            until = (now or timezone.now()) + self.lease
            kept = Server.objects.filter(pk__in=self.ids, claimed_until=self.until).update(claimed_until=until)
            self.until = until
        if kept < len(self.ids):
            logger.warning(
                "scan claim: %d of %d servers are no longer held by this scan", len(self.ids) - kept, len(self.ids)
            )
        return kept

    def held(self, servers: Sequence[Server]) -> list[Server]:
        """The servers still held by this claim, row-locked until the caller's transaction ends.

        Called inside the scan's storing transaction: a server whose claim was lost (this worker
        stalled past its lease and another scan took it) is not stored by this scan.
        """
        with self._lock:
            ids = set(
                Server.objects.filter(pk__in=[s.pk for s in servers], claimed_until=self.until)
                .select_for_update()
                .values_list("pk", flat=True)
            )
        if len(ids) < len(servers):
            logger.warning(
                "scan claim lost on %d servers: their results are not stored by this scan", len(servers) - len(ids)
            )
        return [s for s in servers if s.pk in ids]

    def release(self) -> int:
        """Give back the servers this claim still holds (a scan that failed before storing)."""
        with self._lock:
            return Server.objects.filter(pk__in=self.ids, claimed_until=self.until).update(claimed_until=None)

    @contextmanager
    def renewing(self, every: float | None = None) -> Iterator[ScanClaim]:
        """Renew the lease from a background thread while the body runs; release at the end."""
        interval = every if every is not None else self.lease.total_seconds() / 4
        stop = threading.Event()

        def run() -> None:
            try:
                while not stop.wait(interval):
                    try:
                        self.renew()
                    except (DatabaseError, InterfaceError):  # the database is away: keep trying
                        logger.warning("scan claim: renewal failed; retrying", exc_info=True)
                        connection.close()
            finally:
                connection.close()  # this thread's own connection

        thread = threading.Thread(target=run, name="scan-claim-renewal", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=interval + 30)
            try:
                self.release()
            except (DatabaseError, InterfaceError):  # the lease runs out by itself
                logger.warning("scan claim: release failed; the lease runs out in %s", self.lease, exc_info=True)


def scans_queue(server_ids: Sequence[int]) -> int:
    """Queue scans of these servers now, in batches; returns how many were queued.

    Best effort: with the broker away the servers stay due, and beat's next pass claims them.
    """
    ids = list(server_ids)
    batch = settings.KEYCHEST_SCAN_BATCH
    if SCAN_BATCH_TASK not in current_app.tasks:  # a web process: task modules load on first use
        current_app.loader.import_default_modules()
    task = current_app.tasks[SCAN_BATCH_TASK]
    for start in range(0, len(ids), batch):
        try:
            task.apply_async(args=(ids[start : start + batch],), retry=False)
        except Exception:  # any broker failure: beat's next pass queues them
            logger.warning("could not queue the scan of %d servers; beat will", len(ids) - start, exc_info=True)
            return start
    return len(ids)


def scans_queue_after_commit(server_ids: Sequence[int]) -> None:
    """Queue first scans once the surrounding transaction commits (at once outside one).

    Once per transaction: a loop of enrolments adds its servers to one pending list, sent in
    batches on commit. A rollback drops the list with the servers it named.
    """
    if not server_ids:
        return
    if connection.in_atomic_block:
        for entry in connection.run_on_commit:
            pending = getattr(entry[1], MARKER, None)
            if pending is not None:
                pending.extend(server_ids)
                return
    ids = list(server_ids)

    def send() -> None:
        scans_queue(ids)

    setattr(send, MARKER, ids)
    transaction.on_commit(send)
