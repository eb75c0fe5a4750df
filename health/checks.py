"""Is the monitoring itself working? Freshness of every part of the pipeline.

A monitor that silently stopped is worse than none: its users believe they are covered. Each
check below measures how stale one part is (the beat → broker → worker heartbeat, overdue scans,
CT logs, pending deliveries, stuck report claims, the canary scan) and says ok, warn or fail.
`system_status` is what `/status.json`, the staff status page and `manage.py monitoring_status`
show; `team_freshness` is the line on a team's dashboard.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet

from certificates.models import CTLog
from health.models import Heartbeat
from keychest.accounts.models import Team
from monitors.models import DomainRegistration, RegistrationWatch, Server
from notifications.models import Delivery, DeliveryStatus, ReportSend, ReportStatus

PIPELINE = "pipeline"
CANARY = "canary"

# A heartbeat is written every minute (HEARTBEAT_INTERVAL); three missed beats warn, ten fail.
HEARTBEAT_INTERVAL = 60
PIPELINE_WARN = timedelta(minutes=3)
PIPELINE_FAIL = timedelta(minutes=10)
# A server is overdue once its next_scan_at is this far in the past (beat claims due servers
# every minute; a full queue may delay a batch by a few minutes).
SCAN_GRACE = timedelta(minutes=15)
SCAN_FAIL = timedelta(hours=1)
# A log backing off (or never read) warns after 5 minutes without a read and fails after 30; a
# followed log fails once its head was not read, or it stayed behind it, for
# KEYCHEST_CT_LAG_FAIL_SECONDS (a minute).
CT_WARN = timedelta(minutes=5)
CT_FAIL = timedelta(minutes=30)
DELIVERY_WARN = timedelta(minutes=10)
DELIVERY_FAIL = timedelta(hours=1)
# Registrations are re-read every 48 h; one whose check is this late means RDAP checks stopped.
REGISTRATION_WARN = timedelta(hours=6)
REGISTRATION_FAIL = timedelta(days=2)


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    OFF = "off"  # not configured here (CT ingestion off, no canary): not a failure


_RANK = {Status.OK: 0, Status.OFF: 0, Status.WARN: 1, Status.FAIL: 2}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    summary: str
    age_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": str(self.status),
            "summary": self.summary,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
            "details": self.details,
        }


def worst(statuses: list[Status]) -> Status:
    """The overall status: the worst of the checks (OFF counts as OK)."""
    result = Status.OK
    for status in statuses:
        if _RANK[status] > _RANK[result]:
            result = status
    return Status.OK if result is Status.OFF else result


def _graded(age: timedelta, warn: timedelta, fail: timedelta) -> Status:
    if age > fail:
        return Status.FAIL
    if age > warn:
        return Status.WARN
    return Status.OK


def _span(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _ago(age: timedelta) -> str:
    return f"{_span(age)} ago"


def pipeline_check(now: datetime) -> Check:
    beat = Heartbeat.objects.filter(name=PIPELINE).first()
    if beat is None:
        return Check(PIPELINE, Status.FAIL, "No heartbeat yet: are Celery beat and a worker running?")
    age = now - beat.at
    status = _graded(age, PIPELINE_WARN, PIPELINE_FAIL)
    return Check(
        PIPELINE, status, f"Beat → broker → worker heartbeat {_ago(age)}", age.total_seconds(), dict(beat.details)
    )


def _lateness(
    name: str,
    late: QuerySet[Any],
    due_column: str,
    now: datetime,
    *,
    fail_after: timedelta,
    ok: str,
    late_summary: str,
    count_key: str,
    details: dict[str, Any] | None = None,
) -> Check:
    """OK when `late` is empty; else WARN, or FAIL once its oldest row is `fail_after` late.

    `late_summary` is formatted with {count} and {ago} (how long ago the oldest was due)."""
    found = late.aggregate(count=Count("pk"), oldest=Min(due_column))
    if not found["count"]:
        return Check(name, Status.OK, ok, 0.0, dict(details or {}))
    lag = now - found["oldest"]
    return Check(
        name,
        Status.FAIL if lag > fail_after else Status.WARN,
        late_summary.format(count=found["count"], ago=_ago(lag)),
        lag.total_seconds(),
        {**(details or {}), count_key: found["count"]},
    )


def scans_check(now: datetime) -> Check:
    active = Server.objects.filter(removed_at=None, paused=False)
    total = active.count()
    return _lateness(
        "scans",
        active.filter(next_scan_at__lt=now - SCAN_GRACE),
        "next_scan_at",
        now,
        fail_after=SCAN_FAIL,
        ok=f"No overdue scans ({total} active servers)",
        late_summary=f"{{count}} of {total} servers overdue; the oldest was due {{ago}}",
        count_key="overdue",
        details={"servers": total},
    )


def _ct_log_status(log: CTLog, now: datetime) -> tuple[Status, str, timedelta | None]:
    """One log's status, why, and how long since its head was last read."""
    lag_fail = timedelta(seconds=settings.KEYCHEST_CT_LAG_FAIL_SECONDS)
    age = now - log.last_success_at if log.last_success_at else None
    if log.halted_reason:
        return Status.FAIL, f"halted: {log.halted_reason}", age
    if log.behind_since and now - log.behind_since > lag_fail:
        # The tailer has seen the log's head ahead of it for longer than the real-time promise.
        return Status.FAIL, f"{log.backlog} entries behind its head for {_span(now - log.behind_since)}", age
    if log.backoff_until and log.backoff_until > now:
        status = _graded(age or now - log.created_at, CT_WARN, CT_FAIL)
        return max(status, Status.WARN, key=_RANK.__getitem__), f"backing off: {log.last_error}", age
    if age is None:
        # Never read: failing once the follower has had time to reach it.
        return _graded(now - log.created_at, CT_WARN, CT_FAIL), "not read yet", None
    if age > lag_fail:
        return Status.FAIL, f"head not read for {_span(age)}: is the `ct` process (ct_ingest --follow) running?", age
    return Status.OK, "current", age


def ct_check(now: datetime) -> Check:
    if not settings.KEYCHEST_CT_INGEST:
        return Check("ct", Status.OFF, "Certificate Transparency ingestion is switched off (KEYCHEST_CT_INGEST)")
    logs = list(CTLog.objects.filter(enabled=True))
    if not logs:
        return Check("ct", Status.WARN, "No CT log is enabled: new certificates are not seen")
    per_log: list[dict[str, Any]] = []
    statuses: list[Status] = []
    oldest: timedelta | None = None
    for log in logs:
        status, reason, age = _ct_log_status(log, now)
        statuses.append(status)
        if age is not None and (oldest is None or age > oldest):
            oldest = age
        per_log.append(
            {
                "log": log.description,
                "status": str(status),
                "reason": reason,
                "last_success_age_seconds": None if age is None else round(age.total_seconds(), 1),
                "backlog": log.backlog,
                "lag_seconds": round(log.lag_seconds(now), 1),
                "halted": log.halted_reason,
                "last_error": log.last_error[:200],
            }
        )
    overall = worst(statuses)
    failing = sum(1 for s in statuses if s is not Status.OK)
    summary = (
        f"{len(logs)} logs current, the stalest read {_ago(oldest or timedelta(0))}"
        if not failing
        else f"{failing} of {len(logs)} logs behind, stale, backing off or halted"
    )
    backlog = sum(entry["backlog"] for entry in per_log)
    return Check(
        "ct",
        overall,
        summary,
        None if oldest is None else oldest.total_seconds(),
        {"logs": per_log, "backlog": backlog},
    )


def deliveries_check(now: datetime) -> Check:
    """Alerts waiting past their time, and alerts backing off after failed attempts (an SMTP
    server or webhook receiver down): the back-off moves `send_after` forward, so a delivery
    that keeps failing is never "late"; it is reported by how long ago its first attempt failed."""
    pending = Delivery.objects.filter(status=DeliveryStatus.PENDING, collecting=False)
    late = pending.filter(send_after__lt=now - DELIVERY_WARN).filter(Q(claimed_until=None) | Q(claimed_until__lt=now))
    waiting = _lateness(
        "deliveries",
        late,
        "send_after",
        now,
        fail_after=DELIVERY_FAIL,
        ok="No alert is waiting past its time",
        late_summary="{count} alert deliveries waiting; the oldest was due {ago}",
        count_key="waiting",
    )
    retrying = pending.filter(attempts__gt=0, first_attempt_at__isnull=False).aggregate(
        count=Count("pk"), oldest=Min("first_attempt_at"), next_try=Min("send_after")
    )
    if not retrying["count"]:
        return waiting
    lag = now - retrying["oldest"]
    next_try = "now" if retrying["next_try"] <= now else f"in {_span(retrying['next_try'] - now)}"
    status = Status.FAIL if lag > DELIVERY_FAIL else Status.WARN
    if _RANK[waiting.status] > _RANK[status]:
        return replace(waiting, details={**waiting.details, "retrying": retrying["count"]})
    return Check(
        "deliveries",
        status,
        f"{retrying['count']} alert deliveries backing off after failed attempts; the first failed "
        f"{_ago(lag)}, next try {next_try}",
        lag.total_seconds(),
        {**waiting.details, "retrying": retrying["count"]},
    )


def reports_check(now: datetime) -> Check:
    stuck = ReportSend.objects.filter(status=ReportStatus.CLAIMED, claimed_until__lt=now - DELIVERY_FAIL).filter(
        Q(retry_after=None) | Q(retry_after__lt=now - DELIVERY_FAIL)
    )
    count = stuck.count()
    if not count:
        return Check("reports", Status.OK, "No scheduled email is stuck", 0.0)
    return Check(
        "reports",
        Status.WARN,
        f"{count} scheduled emails claimed but not sent for over an hour",
        None,
        {"stuck": count},
    )


def registrations_check(now: datetime) -> Check:
    """Domain registrations some team watches whose RDAP check is well past its time."""
    watched = DomainRegistration.objects.filter(Exists(RegistrationWatch.objects.filter(registration=OuterRef("pk"))))
    return _lateness(
        "registrations",
        watched.filter(next_check_at__lt=now - REGISTRATION_WARN),
        "next_check_at",
        now,
        fail_after=REGISTRATION_FAIL,
        ok=f"{watched.count()} domain registrations checked on time",
        late_summary="{count} domain registration checks are late; the oldest was due {ago}",
        count_key="late",
    )


def canary_check(now: datetime) -> Check:
    target = settings.KEYCHEST_CANARY_TARGET
    if not target:
        return Check(CANARY, Status.OFF, "No canary target is configured (KEYCHEST_CANARY_TARGET)")
    beat = Heartbeat.objects.filter(name=CANARY).first()
    if beat is None:
        return Check(CANARY, Status.FAIL, f"The canary {target} has not been scanned yet")
    age = now - beat.at
    stale_after = timedelta(seconds=3 * settings.KEYCHEST_CANARY_INTERVAL)
    if age > stale_after:
        return Check(
            CANARY,
            Status.FAIL,
            f"The last canary scan of {target} was {_ago(age)}",
            age.total_seconds(),
            dict(beat.details),
        )
    status = Status.OK if beat.ok else Status.FAIL
    return Check(CANARY, status, beat.summary, age.total_seconds(), dict(beat.details))


def system_status(now: datetime) -> list[Check]:
    return [
        pipeline_check(now),
        scans_check(now),
        ct_check(now),
        deliveries_check(now),
        reports_check(now),
        registrations_check(now),
        canary_check(now),
    ]


@dataclass(frozen=True)
class TeamFreshness:
    """What a team sees: how fresh its own scans are and how current the CT data is."""

    servers: int
    overdue: int
    last_scan_at: datetime | None
    ct_enabled: bool
    ct_current_at: datetime | None
    pipeline_at: datetime | None
    pipeline_ok: bool


def team_freshness(team: Team, now: datetime) -> TeamFreshness:
    scans = Server.objects.filter(team=team, removed_at=None, paused=False).aggregate(
        servers=Count("id"),
        overdue=Count("id", filter=Q(next_scan_at__lt=now - SCAN_GRACE)),
        last=Max("last_scan_at"),
    )
    return team_freshness_from(servers=scans["servers"], overdue=scans["overdue"], last_scan_at=scans["last"], now=now)


def team_freshness_from(*, servers: int, overdue: int, last_scan_at: datetime | None, now: datetime) -> TeamFreshness:
    """The same, with the team's own scan counts already known (the dashboard's tiles query
    counts them with the rest): two small global queries."""
    ct_current_at = None
    if settings.KEYCHEST_CT_INGEST:
        # The data is as current as its stalest enabled log.
        ct_current_at = CTLog.objects.filter(enabled=True).aggregate(oldest=Min("last_success_at"))["oldest"]
    beat = Heartbeat.objects.filter(name=PIPELINE).values_list("at", flat=True).first()
    return TeamFreshness(
        servers=servers,
        overdue=overdue,
        last_scan_at=last_scan_at,
        ct_enabled=settings.KEYCHEST_CT_INGEST,
        ct_current_at=ct_current_at,
        pipeline_at=beat,
        pipeline_ok=(now - beat <= PIPELINE_FAIL) if beat is not None else installed_recently(now),
    )


def installed_recently(now: datetime) -> bool:
    """True while a new installation's first heartbeat can still be on its way: beat sends the
    first one a minute after it starts, so `make run` on a fresh database would otherwise warn
    that scheduled work "has not run for over 10 minutes" in its first minute. Asked only while
    no heartbeat exists; the first migration's time is when the database was made."""
    first = MigrationRecorder.Migration.objects.aggregate(first=Min("applied"))["first"]
    return first is not None and now - first <= PIPELINE_FAIL
