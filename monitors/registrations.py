"""Domain registration expiry from RDAP: which domains, when to check them, storing answers, warnings.

- Which: the registered domain (Public Suffix List) of every watched domain and every watched
  server's host name. `registrations_sync` keeps one global `DomainRegistration` row per
  registered domain (the data is public) and one `RegistrationWatch` row per (team, domain).
- When: every `KEYCHEST_RDAP_INTERVAL_HOURS` (48) with ±15 % jitter, earlier when a warning
  threshold (84/28/14 days) is about to be crossed; claimed atomically like server scans; bounded
  per run and per RDAP server; an RDAP server answering 429/5xx/timeouts backs off as a whole.
- Store: one transaction per domain writes the answer (or the error) and, when the expiry is
  within a threshold, a `domain_expiring` event for every team concerned. The event's dedup
  key holds the expiry date and the threshold, so each threshold fires once per registration
  period and a renewal that moves the expiry re-arms all three.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from events.models import EventKind, Severity
from events.services import NewEvent, events_record_bulk
from kcproto.names import InvalidName, normalise_name, registered_domain
from monitors import rdap
from monitors.models import (
    REGISTRATION_THRESHOLDS_DAYS,
    DomainRegistration,
    RdapServer,
    RegistrationStatus,
    RegistrationWatch,
    Server,
    WatchedDomain,
)

log = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(minutes=10)
JITTER = 0.15
# New domains are checked within this long of being watched (spread, not all at once).
NEW_DOMAIN_SPREAD = timedelta(minutes=10)
# No RDAP server for the TLD: look again after the bootstrap may have changed.
NO_SERVER_RETRY = timedelta(days=7)
# A failed check is retried after this, doubling per consecutive failure up to the interval.
ERROR_RETRY = timedelta(hours=1)
# A threshold is crossed at an exact time; check just after it so the event is on time.
THRESHOLD_SLACK = timedelta(minutes=1)
THRESHOLD_SEVERITY = {84: Severity.INFO, 28: Severity.WARNING, 14: Severity.ERROR}
# The weekly report lists registrations expiring within the first warning threshold.
REPORT_WITHIN_DAYS = max(REGISTRATION_THRESHOLDS_DAYS)


@dataclass(frozen=True)
class RdapConfig:
    """Settings of one run (read once, passed to the pure fetching code)."""

    allow_private: bool
    timeout: float
    max_bytes: int
    interval: timedelta
    batch: int
    per_server: int
    workers: int
    backoff: float
    backoff_max: float
    bootstrap_source: str

    @classmethod
    def from_settings(cls) -> RdapConfig:
        return cls(
            allow_private=settings.KEYCHEST_ALLOW_PRIVATE_TARGETS,
            timeout=float(settings.KEYCHEST_RDAP_TIMEOUT),
            max_bytes=settings.KEYCHEST_RDAP_MAX_BYTES,
            interval=timedelta(hours=settings.KEYCHEST_RDAP_INTERVAL_HOURS),
            batch=settings.KEYCHEST_RDAP_BATCH,
            per_server=settings.KEYCHEST_RDAP_PER_SERVER,
            workers=settings.KEYCHEST_RDAP_WORKERS,
            backoff=float(settings.KEYCHEST_RDAP_BACKOFF_SECONDS),
            backoff_max=float(settings.KEYCHEST_RDAP_BACKOFF_MAX_SECONDS),
            bootstrap_source=settings.KEYCHEST_RDAP_BOOTSTRAP,
        )


# --- bootstrap ----------------------------------------------------------------------------------
_BOOTSTRAP_TTL = 24 * 3600.0
_bootstrap_lock = threading.Lock()
_bootstrap_cache: dict[str, tuple[float, rdap.Bootstrap]] = {}


def bootstrap_get(config: RdapConfig) -> rdap.Bootstrap:
    """The bootstrap for `config`, read at most once a day per process (a URL is fetched again then)."""
    source = config.bootstrap_source
    with _bootstrap_lock:
        cached = _bootstrap_cache.get(source)
        if cached and time.monotonic() - cached[0] < _BOOTSTRAP_TTL:
            return cached[1]
    try:
        loaded = rdap.load_bootstrap(source, allow_private=config.allow_private, timeout=config.timeout)
    except rdap.BootstrapError:
        # The configured bootstrap is unreachable or broken: keep checking with what we had
        # (the last good copy, else the bundled snapshot) and try again in an hour.
        log.exception("RDAP bootstrap %s cannot be read; using the last good copy", source)
        loaded = cached[1] if cached else rdap.load_bootstrap(None, allow_private=config.allow_private)
        with _bootstrap_lock:
            _bootstrap_cache[source] = (time.monotonic() - _BOOTSTRAP_TTL + 3600.0, loaded)
        return loaded
    with _bootstrap_lock:
        _bootstrap_cache[source] = (time.monotonic(), loaded)
    return loaded


def bootstrap_forget() -> None:
    """Drop the cached bootstrap (tests, and after changing KEYCHEST_RDAP_BOOTSTRAP)."""
    with _bootstrap_lock:
        _bootstrap_cache.clear()


# --- which domains ------------------------------------------------------------------------------
def registered_domain_of(name: str) -> str:
    """The registered domain of a host or domain name, "" for IP literals, suffixes and bad names."""
    try:
        return registered_domain(normalise_name(name))
    except InvalidName:
        return ""


@dataclass
class SyncResult:
    registrations_created: int = 0
    watches_added: int = 0
    watches_removed: int = 0


def _watched_pairs() -> set[tuple[int, str]]:
    pairs: set[tuple[int, str]] = set()
    for team_id, host in Server.objects.filter(removed_at=None).values_list("team_id", "host").distinct().iterator():
        domain = registered_domain_of(host)
        if domain:
            pairs.add((team_id, domain))
    for team_id, name in (
        WatchedDomain.objects.filter(removed_at=None).values_list("team_id", "domain").distinct().iterator()
    ):
        domain = registered_domain_of(name)
        if domain:
            pairs.add((team_id, domain))
    return pairs


def _new_check_time(now: datetime) -> datetime:
    return now + NEW_DOMAIN_SPREAD * random.random()


def registrations_ensure(domains: Iterable[str], *, now: datetime | None = None) -> dict[str, int]:
    """Rows for these registered domains (created pending, due soon); domain -> id."""
    now = now or timezone.now()
    wanted = sorted(set(domains))
    ids: dict[str, int] = {}
    for start in range(0, len(wanted), 5000):
        chunk = wanted[start : start + 5000]
        ids.update(DomainRegistration.objects.filter(domain__in=chunk).values_list("domain", "id"))
        missing = [d for d in chunk if d not in ids]
        if missing:
            DomainRegistration.objects.bulk_create(
                [DomainRegistration(domain=d, next_check_at=_new_check_time(now)) for d in missing],
                ignore_conflicts=True,
            )
            ids.update(DomainRegistration.objects.filter(domain__in=missing).values_list("domain", "id"))
    return ids


def registrations_sync(*, now: datetime | None = None) -> SyncResult:
    """Bring registrations and (team, registration) watches in line with servers and watched domains."""
    now = now or timezone.now()
    result = SyncResult()
    pairs = _watched_pairs()
    before = DomainRegistration.objects.count()
    ids = registrations_ensure({d for _, d in pairs}, now=now)
    result.registrations_created = DomainRegistration.objects.count() - before
    wanted = {(team_id, ids[d]) for team_id, d in pairs if d in ids}
    existing = {
        (team_id, reg_id): pk
        for pk, team_id, reg_id in RegistrationWatch.objects.values_list("pk", "team_id", "registration_id").iterator()
    }
    stale = [pk for key, pk in existing.items() if key not in wanted]
    new = [RegistrationWatch(team_id=t, registration_id=r) for t, r in sorted(wanted - existing.keys())]
    with transaction.atomic():
        for start in range(0, len(stale), 5000):
            RegistrationWatch.objects.filter(pk__in=stale[start : start + 5000]).delete()
        RegistrationWatch.objects.bulk_create(new, ignore_conflicts=True, batch_size=1000)
    result.watches_added, result.watches_removed = len(new), len(stale)
    return result


# --- scheduling -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claimed:
    """A registration claimed for one check, and the RDAP server to ask ("" when there is none)."""

    id: int
    domain: str
    base_url: str


def _jittered(delta: timedelta) -> timedelta:
    return delta * random.uniform(1 - JITTER, 1 + JITTER)


def registrations_claim_due(
    *, config: RdapConfig, bootstrap: rdap.Bootstrap, now: datetime | None = None, limit: int | None = None
) -> list[Claimed]:
    """Claim due, watched registrations: at most `limit` in all and `config.per_server` per RDAP server.

    Domains whose RDAP server is backing off are moved to just after its back-off, unclaimed.
    """
    now = now or timezone.now()
    limit = config.batch if limit is None else limit
    backing_off: dict[str, datetime] = {
        url: until
        for url, until in RdapServer.objects.filter(backoff_until__gt=now).values_list("base_url", "backoff_until")
        if until is not None
    }
    watched = RegistrationWatch.objects.filter(registration_id=OuterRef("pk"))
    claimed: list[Claimed] = []
    postponed: dict[datetime, list[int]] = defaultdict(list)
    per_server: dict[str, int] = defaultdict(int)
    with transaction.atomic():
        due = list(
            DomainRegistration.objects.filter(Exists(watched), next_check_at__lte=now)
            .filter(Q(claimed_until=None) | Q(claimed_until__lt=now))
            .order_by("next_check_at")
            .select_for_update(skip_locked=True)
            .values_list("id", "domain")[: limit * 4]
        )
        for reg_id, domain in due:
            if len(claimed) >= limit:
                break
            base_url = bootstrap.server_for(domain)
            if base_url in backing_off:
                postponed[backing_off[base_url]].append(reg_id)
                continue
            if base_url and per_server[base_url] >= config.per_server:
                continue  # the next run takes it: one RDAP server is not asked too much at once
            per_server[base_url] += 1
            claimed.append(Claimed(id=reg_id, domain=domain, base_url=base_url))
        if claimed:
            DomainRegistration.objects.filter(pk__in=[c.id for c in claimed]).update(
                claimed_until=now + CLAIM_LEASE, next_check_at=now + CLAIM_LEASE
            )
        for until, reg_ids in postponed.items():
            DomainRegistration.objects.filter(pk__in=reg_ids).update(
                next_check_at=until + timedelta(seconds=random.uniform(0, 300))
            )
    return claimed


# --- fetching (no database: runs on worker threads) -------------------------------------------
@dataclass
class Outcome:
    """What asking about one domain gave: a record, or an error (or it was not asked)."""

    claimed: Claimed
    record: rdap.RdapRecord | None = None
    error: rdap.RdapError | None = None
    asked: bool = True


# One run stops asking after this long (the rest is released for the next run), well within
# the Celery task time limit even when every server answers just under its timeout.
RUN_BUDGET_SECONDS = 240.0


def _fetch_group(items: Sequence[Claimed], config: RdapConfig, stop_at: float) -> list[Outcome]:
    """One RDAP server's domains, one after another; stop asking it once it shows trouble."""
    outcomes: list[Outcome] = []
    troubled = False
    for item in items:
        if troubled or time.monotonic() > stop_at:
            outcomes.append(Outcome(claimed=item, asked=False))
            continue
        if not item.base_url:
            outcomes.append(Outcome(claimed=item, error=rdap.RdapError(rdap.NO_SERVER, "no RDAP server for this TLD")))
            continue
        try:
            record = rdap.query_domain(
                item.base_url,
                item.domain,
                allow_private=config.allow_private,
                timeout=config.timeout,
                max_bytes=config.max_bytes,
            )
            outcomes.append(Outcome(claimed=item, record=record))
        except rdap.RdapError as error:
            outcomes.append(Outcome(claimed=item, error=error))
            troubled = error.code in rdap.SERVER_TROUBLE or error.code == rdap.REFUSED
        except Exception as error:
            log.exception("RDAP query for %s failed unexpectedly", item.domain)
            outcomes.append(
                Outcome(claimed=item, error=rdap.RdapError(rdap.MALFORMED, f"{type(error).__name__}: {error}"))
            )
    return outcomes


def fetch_claimed(claimed: Sequence[Claimed], config: RdapConfig) -> list[Outcome]:
    groups: dict[str, list[Claimed]] = defaultdict(list)
    for item in claimed:
        groups[item.base_url].append(item)
    if not groups:
        return []
    stop_at = time.monotonic() + RUN_BUDGET_SECONDS
    with ThreadPoolExecutor(max_workers=max(1, min(config.workers, len(groups))), thread_name_prefix="rdap") as pool:
        results = pool.map(lambda group: _fetch_group(group, config, stop_at), groups.values())
        return [outcome for group in results for outcome in group]


# --- storing ----------------------------------------------------------------------------------------
_DATA_FIELDS = ("status", "expires_at", "registered_at", "changed_at", "registrar", "statuses")


def _data(registration: DomainRegistration) -> tuple[Any, ...]:
    return tuple(getattr(registration, f) for f in _DATA_FIELDS)


def _next_check(registration: DomainRegistration, now: datetime, base: timedelta) -> datetime:
    when = now + _jittered(base)
    crossing = registration.next_threshold_at(now)
    if crossing is not None and crossing + THRESHOLD_SLACK < when:
        when = crossing + THRESHOLD_SLACK
    return when


def _threshold_events(registration: DomainRegistration, now: datetime) -> list[NewEvent]:
    threshold = registration.threshold(now)
    if threshold is None or registration.expires_at is None:
        return []
    expires = registration.expires_at
    days_left = registration.days_left(now)
    payload = {
        "domain": registration.domain,
        "expires_at": expires.isoformat(),
        "days_left": days_left,
        "threshold_days": threshold,
        "registrar": registration.registrar,
        "rdap_server": registration.rdap_server,
        "checked_at": registration.last_checked_at.isoformat() if registration.last_checked_at else None,
    }
    # One key per registration period (the expiry date) and threshold: retries and re-checks add
    # nothing, a renewal (a new expiry date) re-arms every threshold.
    dedup = f"rdap:expiring:{registration.domain}:{expires.date().isoformat()}:{threshold}"
    team_ids = RegistrationWatch.objects.filter(registration=registration).values_list("team_id", flat=True)
    return [
        NewEvent(
            team_id=team_id,
            kind=EventKind.DOMAIN_EXPIRING,
            subject=f"{registration.domain} expires {expires.date().isoformat()} ({days_left} days left)",
            dedup_key=dedup,
            payload=payload,
            severity=THRESHOLD_SEVERITY.get(threshold, Severity.WARNING),
            occurred_at=now,
        )
        for team_id in team_ids
    ]


def registration_store(
    *,
    registration_id: int,
    base_url: str,
    record: rdap.RdapRecord | None = None,
    error: rdap.RdapError | None = None,
    config: RdapConfig,
    now: datetime | None = None,
) -> DomainRegistration:
    """Store one check's answer (or error) and its warnings, in one transaction."""
    now = now or timezone.now()
    with transaction.atomic():
        reg = DomainRegistration.objects.select_for_update().get(pk=registration_id)
        before = _data(reg)
        reg.rdap_server = base_url[:500]
        reg.last_checked_at = now
        reg.claimed_until = None
        if record is not None:
            reg.status = RegistrationStatus.OK
            reg.expires_at, reg.registered_at, reg.changed_at = (
                record.expires_at,
                record.registered_at,
                record.changed_at,
            )
            reg.registrar, reg.statuses = record.registrar, record.statuses
            reg.last_error_code, reg.last_error, reg.consecutive_errors = "", "", 0
            if record.expires_at is None:
                # Some registries (and some ccTLDs) publish no expiration event: known, but no date.
                reg.last_error_code, reg.last_error = "no_expiry", "the RDAP answer has no expiration event"
            reg.next_check_at = _next_check(reg, now, config.interval)
        elif error is not None and error.code == rdap.NOT_FOUND:
            reg.status = RegistrationStatus.NOT_FOUND
            reg.expires_at = reg.registered_at = reg.changed_at = None
            reg.registrar, reg.statuses = "", []
            reg.last_error_code, reg.last_error, reg.consecutive_errors = error.code, error.message, 0
            reg.next_check_at = _next_check(reg, now, config.interval)
        elif error is not None and error.code == rdap.NO_SERVER:
            reg.status = RegistrationStatus.NO_SERVER
            reg.last_error_code, reg.last_error = error.code, error.message
            reg.next_check_at = now + _jittered(NO_SERVER_RETRY)
        else:
            assert error is not None
            # Keep what we knew: a flaky RDAP server must not make a known expiry disappear.
            if reg.status in (RegistrationStatus.PENDING, RegistrationStatus.NO_SERVER):
                reg.status = RegistrationStatus.ERROR
            reg.consecutive_errors += 1
            reg.last_error_code, reg.last_error = error.code, error.message
            retry = min(ERROR_RETRY * 2 ** min(reg.consecutive_errors - 1, 10), config.interval)
            if error.retry_after:
                retry = max(retry, timedelta(seconds=error.retry_after))
            reg.next_check_at = _next_check(reg, now, retry)
        if _data(reg) != before:
            reg.last_changed_at = now
        reg.save()
        # Warn from the last known expiry even when this check failed: a registry outage must not
        # swallow the 14-day warning (the payload says when the data was last confirmed).
        events_record_bulk(_threshold_events(reg, now))
    return reg


def rdap_server_record(*, base_url: str, error: rdap.RdapError | None, config: RdapConfig, now: datetime) -> None:
    """Remember an RDAP server's health: trouble backs it off (doubling, jittered, at least Retry-After)."""
    if not base_url:
        return
    with transaction.atomic():
        server, _ = RdapServer.objects.select_for_update().get_or_create(base_url=base_url[:500])
        if error is None or error.code not in rdap.SERVER_TROUBLE:
            if error is None or error.code in (rdap.NOT_FOUND, rdap.MALFORMED, rdap.HTTP_ERROR, rdap.TOO_LARGE):
                server.failures, server.backoff_until = 0, None
                server.last_success_at = now
            server.save()
            return
        server.failures += 1
        delay = min(config.backoff * 2 ** min(server.failures - 1, 20), config.backoff_max)
        delay *= random.uniform(0.75, 1.25)
        if error.retry_after:
            delay = max(delay, error.retry_after)
        server.backoff_until = now + timedelta(seconds=delay)
        server.last_error = error.message
        server.save()


@dataclass
class CheckRun:
    """What one run did (the task's return value and the command's --json output)."""

    claimed: int = 0
    ok: int = 0
    not_found: int = 0
    errors: int = 0
    deferred: int = 0
    domains: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def registration_summary(reg: DomainRegistration, now: datetime) -> dict[str, Any]:
    return {
        "domain": reg.domain,
        "status": reg.status,
        "expires_at": reg.expires_at.isoformat() if reg.expires_at else None,
        "days_left": reg.days_left(now),
        "registered_at": reg.registered_at.isoformat() if reg.registered_at else None,
        "changed_at": reg.changed_at.isoformat() if reg.changed_at else None,
        "registrar": reg.registrar,
        "statuses": reg.statuses,
        "rdap_server": reg.rdap_server,
        "last_checked_at": reg.last_checked_at.isoformat() if reg.last_checked_at else None,
        "next_check_at": reg.next_check_at.isoformat() if reg.next_check_at else None,
        "last_error": reg.last_error,
    }


def registrations_check_claimed(claimed: Sequence[Claimed], *, config: RdapConfig) -> CheckRun:
    run = CheckRun(claimed=len(claimed))
    for outcome in fetch_claimed(claimed, config):
        item = outcome.claimed
        now = timezone.now()
        if not outcome.asked:
            # Its RDAP server showed trouble earlier in this run (or the run's time was up):
            # release it for a later run.
            DomainRegistration.objects.filter(pk=item.id).update(
                claimed_until=None, next_check_at=now + timedelta(seconds=config.backoff)
            )
            run.deferred += 1
            continue
        rdap_server_record(base_url=item.base_url, error=outcome.error, config=config, now=now)
        reg = registration_store(
            registration_id=item.id,
            base_url=item.base_url,
            record=outcome.record,
            error=outcome.error,
            config=config,
            now=now,
        )
        if outcome.record is not None:
            run.ok += 1
        elif outcome.error is not None and outcome.error.code == rdap.NOT_FOUND:
            run.not_found += 1
        else:
            run.errors += 1
        run.domains.append(registration_summary(reg, now))
    return run


def registrations_check_due(*, config: RdapConfig | None = None, now: datetime | None = None) -> CheckRun:
    """Claim and check the due registrations (one bounded run)."""
    config = config or RdapConfig.from_settings()
    bootstrap = bootstrap_get(config)
    claimed = registrations_claim_due(config=config, bootstrap=bootstrap, now=now)
    return registrations_check_claimed(claimed, config=config)


def registration_check_now(*, name: str, config: RdapConfig | None = None) -> CheckRun:
    """Check the registered domain of `name` now, whatever its schedule (the management command)."""
    config = config or RdapConfig.from_settings()
    domain = registered_domain_of(name)
    if not domain:
        raise InvalidName(f"{name!r} has no registered domain (an IP address or a public suffix?)")
    reg_id = registrations_ensure([domain])[domain]
    bootstrap = bootstrap_get(config)
    return registrations_check_claimed(
        [Claimed(id=reg_id, domain=domain, base_url=bootstrap.server_for(domain))], config=config
    )


# --- selectors --------------------------------------------------------------------------------------
def registrations_for_names(names: Iterable[str]) -> dict[str, DomainRegistration]:
    """name -> the registration of its registered domain (only names that have one stored)."""
    by_name = {name: registered_domain_of(name) for name in names}
    rows = {r.domain: r for r in DomainRegistration.objects.filter(domain__in={d for d in by_name.values() if d})}
    return {name: rows[d] for name, d in by_name.items() if d in rows}


def registration_for_name(name: str) -> DomainRegistration | None:
    return registrations_for_names([name]).get(name)


def registrations_expiring_for_teams(
    team_ids: Sequence[int], now: datetime, *, within_days: int = REPORT_WITHIN_DAYS
) -> dict[int, list[DomainRegistration]]:
    """Per team, the registrations it watches that expire within `within_days` (or have expired), soonest first. One query."""
    found: dict[int, list[DomainRegistration]] = defaultdict(list)
    for watch in (
        RegistrationWatch.objects.filter(
            team_id__in=list(team_ids), registration__expires_at__lt=now + timedelta(days=within_days)
        )
        .select_related("registration")
        .order_by("registration__expires_at", "registration__domain")
    ):
        found[watch.team_id].append(watch.registration)
    return found
