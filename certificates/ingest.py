"""CT ingestion: read logs, verify what was read, store certificates and events, advance — atomically.

One round for one log:
1. fetch the signed tree head and verify its signature with the key from the log list;
2. on first contact, start at the log's current end (or `start_index`), from a verified proof;
3. fetch the next chunk of entries (parallel requests), add their leaf hashes to our compact
   range and check that the result is a prefix of the signed tree (root or consistency proof);
4. in ONE transaction: store the certificates and their names and sources, record malformed
   entries, record "certificate_issued" events for matching teams, hand discovered hosts to the
   provider, and move the log's position and compact range.

A crash anywhere before the commit leaves the position where it was: the chunk is read again, and
everything it stores is idempotent, so there is no gap and no duplicate. A verification failure
halts the log (nothing of the chunk is stored). 429/5xx/network errors back the log off.

A round reads a log only under its lease (certificates/leases.py), and each commit moves the
position only from where the round started and only while the lease still names the round's
holder: two ingesters on one log never both commit a chunk. The long-running follower that calls
this as soon as a log's head moves is certificates/follower.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from certificates.ctclient import CTClient, LogGone, LogUnavailable, client_for
from certificates.leases import ONCE, ct_lease_take, ct_leases_release, holder_new, lease_expiry
from certificates.loglist import LogSpec
from certificates.matching import Match, matcher, providers
from certificates.models import CTLog, CTMalformedEntry, SourceKind
from certificates.services import StoreItem, certificates_store_bulk
from events.services import NewEvent, events_record_bulk
from kcproto.ctformat import BadEntry, FormatError, LogEntry, SignatureError, TreeHead
from kcproto.merkle import CompactRange, ProofError
from kcproto.x509 import CertificateParseError, ParsedCertificate, parse_certificate
from keychest.accounts.models import Team

logger = logging.getLogger(__name__)

CERTIFICATE_ISSUED = "certificate_issued"


@dataclass
class RoundResult:
    """What one ingestion round of one log did."""

    log_id: int
    entries: int = 0
    certificates_new: int = 0
    malformed: int = 0
    events: int = 0
    caught_up: bool = False
    error: str = ""
    halted: bool = False
    chunks: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    # Why nothing was read, when nothing was (backing off, halted, read by another ingester).
    skipped: str = ""
    # How the starting point was found, when not the usual way (certificates/ctclient.py).
    start_note: str = ""
    head_size: int = 0  # the signed tree size this round read up to


def spec_of(log: CTLog) -> LogSpec:
    return LogSpec(
        log_id=log.log_id,
        description=log.description,
        operator=log.operator,
        kind=log.kind,
        url=log.url,
        submission_url=log.submission_url or log.url,
        public_key=bytes(log.public_key),
        mmd=log.mmd,
        state=log.list_state,
    )


def make_client(log: CTLog) -> CTClient:
    """The HTTP client of a log, with the settings' budget, deadline, cap and address rules."""
    return client_for(
        spec_of(log),
        allow_private=settings.KEYCHEST_ALLOW_PRIVATE_TARGETS,
        parallel=settings.KEYCHEST_CT_PARALLEL,
        timeout=settings.KEYCHEST_CT_TIMEOUT,
        batch_size=log.batch_size,
        max_bytes=settings.KEYCHEST_CT_MAX_BYTES,
    )


# Issuer certificates (a handful of intermediates) are stored once per process, not per entry.
_stored_issuers: set[bytes] = set()


def _issuer_items(client: CTClient, entries: list[LogEntry], ref: str) -> tuple[list[StoreItem], set[bytes]]:
    """The chain certificates not stored yet by this process, and their fingerprints."""
    items: list[StoreItem] = []
    seen: set[bytes] = set()
    for entry in entries:
        chain = list(entry.chain)
        for fp in entry.chain_fingerprints:
            if fp in _stored_issuers:
                continue
            der = client.issuer(fp)
            if der is not None:
                chain.append(der)
        for der in chain:
            fp = hashlib.sha256(der).digest()
            if fp in _stored_issuers or fp in seen:
                continue
            seen.add(fp)
            with contextlib.suppress(CertificateParseError):
                items.append(StoreItem(parse_certificate(der), SourceKind.CT, ref))
    return items, seen


def _existing_teams_only(matches: list[Match]) -> list[Match]:
    """Drop matches of teams deleted since the index was built (one query per chunk with matches)."""
    if not matches:
        return matches
    alive = set(Team.objects.filter(pk__in={m.team_id for m in matches}).values_list("pk", flat=True))
    return [m for m in matches if m.team_id in alive]


def _events_for(matches: list[Match], log: CTLog, index_of: dict[str, int]) -> list[NewEvent]:
    events: list[NewEvent] = []
    seen: set[tuple[int, str]] = set()
    for m in matches:
        cert = m.certificate
        key = (m.team_id, cert.issuance_key)
        if key in seen:  # precertificate and certificate of one issuance in one chunk
            continue
        seen.add(key)
        names = m.names
        events.append(
            NewEvent(
                team_id=m.team_id,
                kind=CERTIFICATE_ISSUED,
                subject=names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1})",
                dedup_key=f"ct:issued:{cert.issuance_key}",
                payload={
                    "sha256": cert.sha256,
                    "issuance_key": cert.issuance_key,
                    "names": names[:50],
                    "all_names": list(cert.all_names[:100]),
                    "issuer": cert.issuer,
                    "serial": cert.serial,
                    "not_before": cert.not_before.isoformat(),
                    "not_after": cert.not_after.isoformat(),
                    "precertificate": cert.is_precertificate,
                    "log": log.description,
                    "log_index": index_of.get(cert.sha256),
                },
            )
        )
    return events


@dataclass
class _ParsedChunk:
    """A chunk's entries read into what the store takes, before any database work."""

    items: list[StoreItem] = field(default_factory=list)
    malformed: list[CTMalformedEntry] = field(default_factory=list)
    index_of: dict[str, int] = field(default_factory=dict)  # sha256 -> first log index
    issuer_items: list[StoreItem] = field(default_factory=list)
    issuer_fps: set[bytes] = field(default_factory=set)


def _parse_chunk(log: CTLog, client: CTClient, entries: list[LogEntry | BadEntry]) -> _ParsedChunk:
    chunk = _ParsedChunk()
    good: list[LogEntry] = []
    for entry in entries:
        if isinstance(entry, BadEntry):
            chunk.malformed.append(CTMalformedEntry(log=log, index=entry.index, reason=entry.reason[:300]))
            continue
        try:
            parsed = parse_certificate(entry.der)
        except CertificateParseError as exc:
            chunk.malformed.append(CTMalformedEntry(log=log, index=entry.index, reason=str(exc)[:300]))
            continue
        chunk.items.append(StoreItem(parsed, SourceKind.CT, f"{log.log_id}:{entry.index}"))
        chunk.index_of.setdefault(parsed.sha256, entry.index)
        good.append(entry)
    chunk.issuer_items, chunk.issuer_fps = _issuer_items(client, good, f"{log.log_id}:issuer")
    return chunk


def _record_matches(log: CTLog, new: list[ParsedCertificate], index_of: dict[str, int], now: datetime) -> int:
    """Events for the teams watching the new leaf certificates, and their discovered hosts.

    In the caller's transaction: the events commit with the entries (their deliveries are queued
    when it commits, `events.services`)."""
    matches = _existing_teams_only(matcher.match([p for p in new if not p.is_ca]))
    if not matches:
        return 0
    events = _events_for(matches, log, index_of)
    for provider in providers():
        events.extend(provider.issuance_events(matches))
    # One order for every writer: two workers recording events for one issuance (its precert in
    # one log, its certificate in another) wait for each other, never deadlock.
    events.sort(key=lambda e: (e.team_id, e.dedup_key))
    events_record_bulk(events)
    for provider in providers():
        provider.hosts_discovered(matches, seen_at=now)
    return len(events)


def _advance(
    log: CTLog, client: CTClient, new_range: CompactRange, head: TreeHead, entries: int, now: datetime
) -> None:
    """Move the log's position, in the chunk's transaction: only from where this round started
    and only while this round's holder still holds the lease (otherwise _LostRace rolls it all
    back), which renews the lease too."""
    caught_up = {"behind_since": None} if new_range.size >= head.size else {}
    updated = CTLog.objects.filter(pk=log.pk, position=log.position, lease_holder=log.lease_holder).update(
        position=new_range.size,
        compact_range=new_range.to_json(),
        verified_size=head.size,
        verified_root=head.root.hex(),
        verified_at=now,
        sth_size=head.size,
        entries_ingested=log.entries_ingested + entries,
        batch_size=client.batch_size,
        last_success_at=now,
        consecutive_failures=0,
        backoff_until=None,
        lease_until=lease_expiry(),
        **caught_up,
    )
    if updated != 1:
        raise _LostRace


def _commit_chunk(
    log: CTLog,
    client: CTClient,
    entries: list[LogEntry | BadEntry],
    new_range: CompactRange,
    head: TreeHead,
    result: RoundResult,
    *,
    before_commit: Callable[[], None] | None = None,
) -> None:
    t0, c0 = time.perf_counter(), time.thread_time()
    chunk = _parse_chunk(log, client, entries)
    t1, c1 = time.perf_counter(), time.thread_time()
    now = timezone.now()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # A crash may lose the last chunks' commit, never half of one: entries and position
            # go together, so they are simply read again. No fsync wait per chunk, then.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        stored = certificates_store_bulk(items=chunk.issuer_items + chunk.items)
        t2, c2 = time.perf_counter(), time.thread_time()
        events = _record_matches(log, stored.new, chunk.index_of, now)
        if chunk.malformed:
            CTMalformedEntry.objects.bulk_create(chunk.malformed, ignore_conflicts=True)
        if before_commit is not None:
            before_commit()
        _advance(log, client, new_range, head, len(entries), now)
    t3, c3 = time.perf_counter(), time.thread_time()
    _stored_issuers.update(chunk.issuer_fps)  # only once they are committed
    log.position = new_range.size
    log.compact_range = new_range.to_json()
    log.entries_ingested += len(entries)
    if new_range.size >= head.size:
        log.behind_since = None
    result.entries += len(entries)
    result.certificates_new += len(stored.new)
    result.malformed += len(chunk.malformed)
    result.events += events
    result.chunks += 1
    # Wall time per step, and the CPU time of this thread in it (the prefetch thread's is apart).
    for k, v in (
        ("parse", t1 - t0),
        ("store", t2 - t1),
        ("match_commit", t3 - t2),
        ("parse_cpu", c1 - c0),
        ("store_cpu", c2 - c1),
        ("match_commit_cpu", c3 - c2),
    ):
        result.timings[k] = result.timings.get(k, 0.0) + v


class _LostRace(Exception):
    """Another ingester advanced this log first, or took its lease."""


def _halt(log: CTLog, reason: str, result: RoundResult) -> RoundResult:
    logger.error("CT log %s halted: %s", log.description, reason)
    now = timezone.now()
    CTLog.objects.filter(pk=log.pk).update(halted_reason=reason[:2000], last_error=reason[:2000], last_error_at=now)
    log.halted_reason = reason
    result.error = reason
    result.halted = True
    return result


def _back_off(log: CTLog, exc: LogUnavailable, result: RoundResult) -> RoundResult:
    failures = log.consecutive_failures + 1
    base = settings.KEYCHEST_CT_BACKOFF_SECONDS
    delay = min(settings.KEYCHEST_CT_BACKOFF_MAX_SECONDS, base * 2 ** min(failures - 1, 16))
    # Jitter so that many workers do not return to a struggling log in lock-step.
    delay *= random.uniform(0.75, 1.25)
    if exc.retry_after is not None:
        delay = max(delay, exc.retry_after)
    now = timezone.now()
    message = str(exc) + (" (log vanished?)" if isinstance(exc, LogGone) else "")
    CTLog.objects.filter(pk=log.pk).update(
        consecutive_failures=failures,
        backoff_until=now + timedelta(seconds=delay),
        last_error=message[:2000],
        last_error_at=now,
    )
    log.consecutive_failures = failures
    log.backoff_until = now + timedelta(seconds=delay)
    log.last_error = message
    result.error = message
    return result


# What reading a log can raise: halts (the log served something that does not verify) or back-offs.
READ_ERRORS = (SignatureError, ProofError, FormatError, LogUnavailable)


def _failed(log: CTLog, exc: Exception, result: RoundResult) -> RoundResult:
    if isinstance(exc, SignatureError):
        return _halt(log, f"signature: {exc}", result)
    if isinstance(exc, ProofError):
        return _halt(log, f"Merkle verification: {exc}", result)
    if isinstance(exc, FormatError):
        return _back_off(log, LogUnavailable(f"malformed answer: {exc}"), result)
    if isinstance(exc, LogUnavailable):
        return _back_off(log, exc, result)
    raise exc


def ct_log_read_failed(*, log: CTLog, error: Exception) -> RoundResult:
    """Record a failed read of a log's head (one of READ_ERRORS) as a round would: halt or back off."""
    return _failed(log, error, RoundResult(log_id=log.pk))


def ct_log_ingest(
    log: CTLog,
    *,
    max_seconds: float | None = None,
    client: CTClient | None = None,
    before_commit: Callable[[], None] | None = None,
    holder: str | None = None,
    head: TreeHead | None = None,
    seen_at: datetime | None = None,
) -> RoundResult:
    """Ingest one log until it is caught up with its tree head or `max_seconds` pass.

    `holder` is a follower that holds the log's lease already (certificates/leases.py); without
    one, the round takes the lease itself (and skips the log if another ingester holds it) and
    gives it back at the end. `head` is a tree head the caller has just read and verified, seen
    at `seen_at` (default: read it now)."""
    result = RoundResult(log_id=log.pk)
    now = timezone.now()
    if not log.enabled or log.halted_reason:
        result.skipped = "disabled" if not log.enabled else f"halted: {log.halted_reason}"
        return result
    if log.backoff_until and log.backoff_until > now:
        result.skipped = f"backing off until {log.backoff_until:%H:%M:%S} UTC: {log.last_error}"
        return result
    own_lease = holder is None
    log.lease_holder = holder or holder_new(ONCE)
    if own_lease and not ct_lease_take(log_pk=log.pk, holder=log.lease_holder):
        other = CTLog.objects.filter(pk=log.pk).values_list("lease_holder", flat=True).first()
        result.skipped = f"read by another ingester ({other})"
        return result
    own_client = client is None
    active = client or make_client(log)
    try:
        return _ingest(
            log,
            result,
            max_seconds=max_seconds,
            client=active,
            before_commit=before_commit,
            head=head,
            seen_at=seen_at or now,
        )
    finally:
        if own_lease:
            ct_leases_release(holder=log.lease_holder, log_pks=[log.pk])
        if own_client:
            active.close()


def _verify_and_commit(
    log: CTLog,
    client: CTClient,
    rng: CompactRange,
    entries: list[LogEntry | BadEntry],
    end: int,
    head: TreeHead,
    result: RoundResult,
    before_commit: Callable[[], None] | None,
) -> CompactRange | None:
    """Check a fetched chunk against the signed tree and commit it; None if the log was halted."""
    if len(entries) != end - rng.size or any(e.index != rng.size + i for i, e in enumerate(entries)):
        raise LogUnavailable("the log returned a different range than asked for")
    new_range = rng.copy()
    for entry in entries:
        if entry.leaf_hash is None:
            _halt(log, f"entry {entry.index} cannot be hashed: {entry.reason}", result)  # type: ignore[union-attr]
            return None
        new_range.append(entry.leaf_hash)
    client.check_prefix(new_range, head)
    _commit_chunk(log, client, entries, new_range, head, result, before_commit=before_commit)
    return new_range


def _start(log: CTLog, client: CTClient, head: TreeHead, result: RoundResult) -> None:
    """First contact: a verified starting point at the log's end (or `start_index`)."""
    start = head.size if log.start_index is None else min(log.start_index, head.size)
    rng, note = client.start_range(start, head)
    if note:
        logger.warning("CT log %s: %s", log.description, note)
        result.start_note = note
    CTLog.objects.filter(pk=log.pk, position=None, lease_holder=log.lease_holder).update(
        position=rng.size,
        compact_range=rng.to_json(),
        verified_size=head.size,
        verified_root=head.root.hex(),
        verified_at=timezone.now(),
        start_note=note,
    )
    log.position = rng.size
    log.compact_range = rng.to_json()
    log.start_note = note


def _note_head(log: CTLog, head: TreeHead, seen_at: datetime) -> None:
    """Record the newest signed size, and since when we are behind it (health: lag)."""
    fields: dict[str, object] = {"sth_size": head.size}
    if log.position is not None and head.size > log.position and log.behind_since is None:
        fields["behind_since"] = log.behind_since = seen_at
    CTLog.objects.filter(pk=log.pk).update(**fields)
    log.sth_size = head.size


def _fetch_and_commit(
    log: CTLog,
    client: CTClient,
    rng: CompactRange,
    head: TreeHead,
    result: RoundResult,
    deadline: float | None,
    before_commit: Callable[[], None] | None,
) -> CompactRange | None:
    """Read [rng.size, head.size) chunk by chunk; the next chunk downloads while one is verified
    and stored. Returns the range reached, or None if the log was halted."""
    chunk = settings.KEYCHEST_CT_CHUNK
    prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ct-prefetch")
    pending: tuple[int, Future[list[LogEntry | BadEntry]]] | None = None
    try:
        while rng.size < head.size:
            end = min(head.size, rng.size + chunk)
            if pending is not None and pending[0] == rng.size:
                entries = pending[1].result()
            else:
                entries = client.fetch(rng.size, end, head)
            pending = None
            if end < head.size and (deadline is None or time.monotonic() < deadline):
                pending = (end, prefetcher.submit(client.fetch, end, min(head.size, end + chunk), head))
            verified = _verify_and_commit(log, client, rng, entries, end, head, result, before_commit)
            if verified is None:
                return None
            rng = verified
            if deadline is not None and time.monotonic() > deadline:
                break
    finally:
        prefetcher.shutdown(wait=True, cancel_futures=True)
    return rng


def _ingest(
    log: CTLog,
    result: RoundResult,
    *,
    max_seconds: float | None,
    client: CTClient,
    before_commit: Callable[[], None] | None,
    head: TreeHead | None,
    seen_at: datetime,
) -> RoundResult:
    deadline = time.monotonic() + max_seconds if max_seconds else None
    try:
        head = head or client.tree_head()
        if head.size < log.verified_size:
            return _halt(log, f"tree shrank from {log.verified_size} to {head.size}", result)
        _note_head(log, head, seen_at)
        if log.position is None:
            _start(log, client, head, result)
        rng = CompactRange.from_json(log.compact_range)
        if rng.size != log.position:
            return _halt(log, "stored compact range does not match the position", result)
        if rng.size == head.size:
            client.check_prefix(rng, head)
            CTLog.objects.filter(pk=log.pk).update(
                verified_size=head.size,
                verified_root=head.root.hex(),
                verified_at=timezone.now(),
                last_success_at=timezone.now(),
                consecutive_failures=0,
                backoff_until=None,
                behind_since=None,
            )
            log.behind_since = None
        reached = _fetch_and_commit(log, client, rng, head, result, deadline, before_commit)
        if reached is None:
            return result
        result.caught_up = reached.size >= head.size
        result.head_size = head.size
        return result
    except READ_ERRORS as exc:
        return _failed(log, exc, result)
    except _LostRace:
        result.error = "another ingester advanced this log or took its lease"
        return result


def ct_logs_due(*, log_pk: int | None = None, now: datetime | None = None) -> list[CTLog]:
    """Enabled, not halted logs that are not backing off."""
    now = now or timezone.now()
    qs = CTLog.objects.filter(enabled=True, halted_reason="")
    if log_pk is not None:
        qs = qs.filter(pk=log_pk)
    return [log for log in qs if not log.backoff_until or log.backoff_until <= now]


def ct_ingest_round(*, log_pk: int | None = None, max_seconds: float | None = None) -> list[RoundResult]:
    """One pass over every due log (the Celery task and `ct_ingest` call this), within `max_seconds` in all."""
    deadline = time.monotonic() + max_seconds if max_seconds else None
    results = []
    for log in ct_logs_due(log_pk=log_pk):
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        results.append(ct_log_ingest(log, max_seconds=remaining))
    return results
