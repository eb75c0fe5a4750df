"""The weekly report: who is due, an atomic once-per-week claim, the contents, and the send.

Exactly once per user per week: a `ReportSend(user, "weekly", week)` row is unique. Claiming
inserts it (or takes over one whose lease ran out); only the claimant sends, then marks it
sent. Two schedulers cannot both win the insert; a crash after the claim leaves a row whose
lease runs out, and the next sweep sends it (late, not skipped). An SMTP failure releases the
claim with a back-off, so SMTP down for an hour means the report is an hour late.
"""

from __future__ import annotations

import functools
import logging
import random
import secrets
import time as monotonic_time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.mail import get_connection
from django.db import IntegrityError, connection, transaction
from django.db.models import BigIntegerField, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, Mod
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from keychest.accounts.models import Membership, User
from notifications import emails
from notifications.models import NotificationPreferences, ReportKind, ReportSend, ReportStatus
from notifications.report_data import ExpiryRow, TeamReport, teams_report_data
from notifications.unsubscribe import headers_for, unsubscribe_url

log = logging.getLogger(__name__)

NEW_ACCOUNT_GRACE = timedelta(hours=18)
NUDGE_INTERVAL = timedelta(days=84)
MAX_ROWS = 50  # per list per team; the rest is counted ("and 12 more")
DEFAULT_PREFS = NotificationPreferences()  # the defaults of a user who never saved preferences


# --- schedule -------------------------------------------------------------------------------
def week_of(moment: datetime, zone: tzinfo) -> date:
    """The Monday (in `zone`) of the week holding `moment`: the period key of a weekly report."""
    local = moment.astimezone(zone).date()
    return local - timedelta(days=local.isoweekday() - 1)


def scheduled_at(*, week: date, day: int, hour: int, zone: tzinfo) -> datetime:
    """The report's moment in that week, in UTC (zoneinfo resolves DST gaps and folds)."""
    local = datetime.combine(week + timedelta(days=day - 1), time(hour=hour), tzinfo=zone)
    return local.astimezone(UTC)


def prefs_of(user: User) -> NotificationPreferences:
    try:
        return user.notification_prefs  # type: ignore[attr-defined,no-any-return]
    except NotificationPreferences.DoesNotExist:
        return DEFAULT_PREFS


def report_due_week(user: User, now: datetime, *, force: bool = False) -> date | None:
    """The week whose report is due for the user now, or None (off, too new, not yet time)."""
    prefs = prefs_of(user)
    if not user.is_active or not prefs.weekly_report_enabled:
        return None
    if user.date_joined > now - NEW_ACCOUNT_GRACE:
        return None
    zone = user.tzinfo
    week = week_of(now, zone)
    if force:
        return week
    due = scheduled_at(week=week, day=prefs.weekly_report_day, hour=prefs.weekly_report_hour, zone=zone)
    return week if now >= due else None


# --- claims ---------------------------------------------------------------------------------
def report_claim(*, user_id: int, kind: str, period: date, now: datetime) -> str | None:
    """A claim token if this caller now owns the (user, kind, period) send, else None."""
    token = secrets.token_hex(8)
    lease_until = now + timedelta(seconds=settings.KEYCHEST_NOTIFY_CLAIM_SECONDS)
    try:
        with transaction.atomic():
            ReportSend.objects.create(
                user_id=user_id, kind=kind, period=period, claim_token=token, claimed_until=lease_until, attempts=1
            )
        return token
    except IntegrityError:
        pass
    # The row exists: take it over only if it is still unsent and its lease (and back-off) ran out.
    taken = ReportSend.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        Q(retry_after__isnull=True) | Q(retry_after__lte=now),
        user_id=user_id,
        kind=kind,
        period=period,
        status=ReportStatus.CLAIMED,
    ).update(claim_token=token, claimed_until=lease_until, attempts=F("attempts") + 1)
    return token if taken else None


def reports_claim_bulk(
    *, wanted: list[tuple[int, date]], kind: str, now: datetime
) -> tuple[str, set[tuple[int, date]]]:
    """Claim many (user, period) sends in three statements; returns the token and what we own.

    The same rules as `report_claim`: new rows are ours, existing ones only when unsent with an
    expired lease and back-off. Used by the sweep so that a report costs one commit (its
    "sent" mark), not two.
    """
    token = secrets.token_hex(8)
    if not wanted:
        return token, set()
    lease_until = now + timedelta(seconds=settings.KEYCHEST_NOTIFY_CLAIM_SECONDS)
    ReportSend.objects.bulk_create(
        [
            ReportSend(user_id=u, kind=kind, period=p, claim_token=token, claimed_until=lease_until, attempts=1)
            for u, p in wanted
        ],
        ignore_conflicts=True,
    )
    user_ids = [u for u, _ in wanted]
    periods = {p for _, p in wanted}
    ReportSend.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        Q(retry_after__isnull=True) | Q(retry_after__lte=now),
        user_id__in=user_ids,
        kind=kind,
        period__in=periods,
        status=ReportStatus.CLAIMED,
    ).update(claim_token=token, claimed_until=lease_until, attempts=F("attempts") + 1)
    owned = set(
        ReportSend.objects.filter(claim_token=token, user_id__in=user_ids, kind=kind).values_list("user_id", "period")
    )
    return token, owned & set(wanted)


def report_finish(
    *, user_id: int, kind: str, period: date, token: str, status: str, wait_for_disk: bool = True
) -> bool:
    """Mark a claimed send done. `wait_for_disk=False`: see `_finish_without_waiting_for_disk`."""
    # Only in autocommit: inside a caller's transaction SET LOCAL would cover the caller's writes too.
    if not wait_for_disk and connection.vendor == "postgresql" and not connection.in_atomic_block:
        return _finish_without_waiting_for_disk(user_id=user_id, kind=kind, period=period, token=token, status=status)
    return bool(
        ReportSend.objects.filter(user_id=user_id, kind=kind, period=period, claim_token=token).update(
            status=status, sent_at=timezone.now(), claimed_until=None, last_error=""
        )
    )


def _finish_without_waiting_for_disk(*, user_id: int, kind: str, period: date, token: str, status: str) -> bool:
    """The same UPDATE as `report_finish`, committed without waiting for its WAL fsync.

    The weekly sweep writes this mark once per report; waiting for an fsync each time was the
    largest cost of a sweep. When this returns, the mark is committed in PostgreSQL's memory and
    visible to every other session, so a worker that dies right after it (the crash the mark
    guards against) cannot lose it. Only a crash of the database server itself within about
    3 x wal_writer_delay (0.6 s by default) can lose the last marks; those reports are then sent
    a second time, with the same Message-ID. WAL is replayed in order, so no later write
    survives a mark that was lost. One statement string is one round trip and one implicit
    transaction, which SET LOCAL applies to (and ends with).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SET LOCAL synchronous_commit TO OFF; "
            "UPDATE notifications_reportsend SET status = %s, sent_at = %s, claimed_until = NULL, last_error = '' "
            "WHERE user_id = %s AND kind = %s AND period = %s AND claim_token = %s",
            [status, timezone.now(), user_id, kind, period, token],
        )
        return cursor.rowcount > 0


def report_release(*, user_id: int, kind: str, period: date, token: str, error: str, now: datetime) -> None:
    """Give a claim back after a failed send; retried with back-off by a later sweep."""
    row = ReportSend.objects.filter(user_id=user_id, kind=kind, period=period, claim_token=token).first()
    if row is None:
        return
    wait = min(60 * 2 ** max(row.attempts - 1, 0), 3600) * random.uniform(0.9, 1.1)
    ReportSend.objects.filter(pk=row.pk, claim_token=token).update(
        claimed_until=now, retry_after=now + timedelta(seconds=wait), last_error=error[:500]
    )


# --- contents -------------------------------------------------------------------------------
def relative(moment: datetime, now: datetime) -> str:
    seconds = (moment - now).total_seconds()
    future = seconds >= 0
    seconds = abs(seconds)
    if seconds < 3600:
        amount, unit = max(1, int(seconds // 60)), "minute"
    elif seconds < 2 * 86400:
        amount, unit = int(seconds // 3600), "hour"
    else:
        amount, unit = int(seconds // 86400), "day"
    text = f"{amount} {unit}{'' if amount == 1 else 's'}"
    return f"in {text}" if future else f"{text} ago"


def absolute(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%a %d %b %Y %H:%M %Z")


RENEWAL_WORDS = {
    "ok": "renewal planned",
    "due": "renewal due",
    "overdue": "renewal overdue",
    "expired": "expired",
    "not_yet_valid": "not yet valid",
}


def _expiry_rows(rows: list[ExpiryRow], now: datetime, zone: tzinfo) -> dict[str, Any]:
    shown = [
        {
            "server": r.server,
            "addresses": ", ".join(r.addresses),
            "names": r.names,
            "relative": relative(r.not_after, now),
            "absolute": absolute(r.not_after, zone),
            "renewal": RENEWAL_WORDS.get(r.renewal, r.renewal),
            "renewal_state": r.renewal,
        }
        for r in rows[:MAX_ROWS]
    ]
    return {"rows": shown, "more": max(0, len(rows) - MAX_ROWS)}


def team_section_render(block: dict[str, Any]) -> dict[str, Any]:
    """Render one team's section of a report (text and HTML) into its block.

    A section depends only on the team's data, `now` and the reader's time zone, so a sweep
    renders it once per (team, zone) and every member in that zone gets the same one.
    """
    block["text"] = render_to_string("emails/weekly_report/team.txt", {"team": block})
    block["html"] = render_to_string("emails/weekly_report/team.html", {"team": block})
    return block


def _team_block(team: TeamReport, now: datetime, zone: tzinfo) -> dict[str, Any]:
    """One team's section of the report, its times in the reader's zone."""
    return {
        "name": team.name,
        "servers": team.servers,
        "domains": team.domains,
        "certificates": team.certificates,
        "problem_count": len(team.problems),
        "expiring_now": _expiry_rows(team.expiring_now, now, zone),
        "expiring_soon": _expiry_rows(team.expiring_soon, now, zone),
        "problems": [
            {
                "server": p.server,
                "label": p.label,
                "code": p.code,
                "since": absolute(p.since, zone) if p.since else "",
            }
            for p in team.problems[:MAX_ROWS]
        ],
        "problems_more": max(0, len(team.problems) - MAX_ROWS),
        "issued": [
            {
                "subject": i.subject,
                "issuer": i.issuer,
                "not_after": absolute(i.not_after, zone) if i.not_after else "",
                "seen": absolute(i.occurred_at, zone),
            }
            for i in team.issued[:MAX_ROWS]
        ],
        "issued_more": max(0, len(team.issued) - MAX_ROWS),
        "domain_expiries": [
            {
                "domain": d.domain,
                "relative": relative(d.expires_at, now),
                "absolute": absolute(d.expires_at, zone),
                "registrar": d.registrar,
            }
            for d in team.domain_expiries[:MAX_ROWS]
        ],
        "needs_attention": team.needs_attention,
    }


def _totals(teams: list[TeamReport]) -> dict[str, int]:
    """The counts over all the reader's teams."""
    return {
        "servers": sum(t.servers for t in teams),
        "domains": sum(t.domains for t in teams),
        "certificates": sum(t.certificates for t in teams),
        "problems": sum(len(t.problems) for t in teams),
        "expiring_now": sum(len(t.expiring_now) for t in teams),
        "expiring_soon": sum(len(t.expiring_soon) for t in teams),
        "issued": sum(len(t.issued) for t in teams),
    }


def report_context(
    *,
    user: User,
    teams: list[TeamReport],
    now: datetime,
    week: date,
    sections: dict[tuple[int, str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The weekly report's context; `sections` caches team sections by (team, zone) across users."""
    zone = user.tzinfo
    site = settings.SITE_URL
    sections = {} if sections is None else sections
    team_blocks = []
    for team in teams:
        key = (team.team_id, str(user.timezone))
        if key in sections:
            team_blocks.append(sections[key])
            continue
        team_blocks.append(_team_block(team, now, zone))
        sections[key] = team_section_render(team_blocks[-1])
    return {
        "user": user,
        "week": week,
        "generated": absolute(now, zone),
        "timezone": user.timezone,
        "teams": team_blocks,
        "totals": _totals(teams),
        "all_good": not any(t.needs_attention for t in teams),
        "dashboard_url": site + _path("dashboard"),
        "preferences_url": site + _path("notification_preferences"),
        "unsubscribe_url": unsubscribe_url(user=user, what="weekly"),
    }


@functools.lru_cache(maxsize=16)
def _path(name: str) -> str:
    """URL paths without arguments never change while the process runs; reverse() them once."""
    return reverse(name)


def message_id(*, user: User, kind: str, period: date) -> str:
    """Stable per (user, kind, period): a resend after a crash is recognisably the same message."""
    host = urlsplit(settings.SITE_URL).hostname or "keychest.local"
    return f"<{kind}-{period.isoformat()}-{user.uuid}@{host}>"


# --- the sweep ------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """What a sweep did, for the command's output, logs and the benchmark."""

    considered: int = 0
    due: int = 0
    sent: int = 0
    nudged: int = 0
    skipped: int = 0
    not_claimed: int = 0
    failed: int = 0
    planned: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "considered": self.considered,
            "due": self.due,
            "sent": self.sent,
            "nudged": self.nudged,
            "skipped": self.skipped,
            "not_claimed": self.not_claimed,
            "failed": self.failed,
        }


def candidates(*, now: datetime, email: str | None = None, shard: tuple[int, int] | None = None) -> Iterable[User]:
    users = (
        User.objects.filter(is_active=True, date_joined__lte=now - NEW_ACCOUNT_GRACE)
        .filter(Q(notification_prefs__isnull=True) | Q(notification_prefs__weekly_report_enabled=True))
        .select_related("notification_prefs")
    )
    # Only addresses someone proved they own (dormant API-claimed accounts get nothing).
    users = users.filter(pk__in=EmailAddress.objects.filter(verified=True).values("user_id"))
    if email:
        users = users.filter(email__iexact=email.strip())
    # Members of a team come one after another (by their first team), so a batch holds few teams:
    # their data is read once and each team section is rendered once per time zone.
    first_team = Subquery(Membership.objects.filter(user=OuterRef("pk")).order_by("team_id").values("team_id")[:1])
    users = users.alias(first_team=Coalesce(first_team, F("id"), output_field=BigIntegerField()))
    if shard is not None:
        # Parallel sweeps take disjoint sets of users (a team's members stay together); the
        # claims stay the guarantee, also for a user whose first team changes mid-sweep.
        index, count = shard
        users = users.alias(shard=Mod("first_team", count)).filter(shard=index)
    return users.order_by("first_team", "id").iterator(chunk_size=2000)


def _batches(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _already_done(due: list[tuple[User, date]], now: datetime) -> set[int]:
    """Users whose report of that week is sent, skipped, or claimed by a live worker."""
    if not due:
        return set()
    weeks = {week for _, week in due}
    rows = ReportSend.objects.filter(
        kind=ReportKind.WEEKLY, period__in=weeks, user_id__in=[u.pk for u, _ in due]
    ).values_list("user_id", "period", "status", "claimed_until", "retry_after")
    wanted = {(u.pk, w) for u, w in due}
    done = set()
    for user_id, period, status, claimed_until, retry_after in rows:
        if (user_id, period) not in wanted:
            continue
        busy = status == ReportStatus.CLAIMED and (
            (claimed_until and claimed_until >= now) or (retry_after and retry_after > now)
        )
        if status != ReportStatus.CLAIMED or busy:
            done.add(user_id)
    return done


def _teams_of(users: list[User]) -> tuple[dict[int, list[int]], dict[int, str]]:
    teams_by_user: dict[int, list[int]] = defaultdict(list)
    names: dict[int, str] = {}
    for user_id, team_id, name in (
        Membership.objects.filter(user_id__in=[u.pk for u in users])
        .order_by("team__name", "team_id")
        .values_list("user_id", "team_id", "team__name")
    ):
        teams_by_user[user_id].append(team_id)
        names[team_id] = name
    return teams_by_user, names


def _send_one(
    *,
    user: User,
    week: date,
    teams: list[TeamReport],
    now: datetime,
    result: SweepResult,
    dry_run: bool,
    connection: Any,
    out: Callable[[str], None] | None,
    token: str | None,
    sections: dict[tuple[int, str], dict[str, Any]] | None = None,
) -> str:
    prefs = prefs_of(user)
    watches = any(t.watches_anything for t in teams)
    if not watches:
        nudge_due = prefs.last_nudge_at is None or prefs.last_nudge_at <= now - NUDGE_INTERVAL
        kind = "nudge" if nudge_due else None
    else:
        context_probe_all_good = not any(t.needs_attention for t in teams)
        kind = None if (context_probe_all_good and not prefs.send_all_good) else "weekly_report"
    if dry_run:
        line = f"{user.email}: {kind or 'nothing (skipped)'} for week of {week.isoformat()}"
        result.planned.append(line)
        if out:
            out(line)
        return "dry-run"
    if token is None:
        result.not_claimed += 1
        return "not-claimed"
    if kind is None:
        report_finish(
            user_id=user.pk,
            kind=ReportKind.WEEKLY,
            period=week,
            token=token,
            status=ReportStatus.SKIPPED,
            wait_for_disk=False,
        )
        result.skipped += 1
        return "skipped"
    if kind == "nudge":
        context: dict[str, Any] = {
            "user": user,
            "servers_url": settings.SITE_URL + _path("dashboard"),
            "preferences_url": settings.SITE_URL + _path("notification_preferences"),
            "unsubscribe_url": unsubscribe_url(user=user, what="weekly"),
        }
    else:
        context = report_context(user=user, teams=teams, now=now, week=week, sections=sections)
    headers = {
        **headers_for(context["unsubscribe_url"]),  # the link in the body, signed once
        "Message-ID": message_id(user=user, kind="weekly", period=week),
        "Auto-Submitted": "auto-generated",
    }
    try:
        if connection is not None:
            connection.open()  # keep one SMTP session for the whole sweep (no-op when open)
        emails.report(kind=kind, user=user, context=context, headers=headers, connection=connection)
    except Exception as error:  # noqa: BLE001 - SMTP down: release the claim and retry later
        log.warning("weekly report to user %s failed: %s", user.pk, error)
        if connection is not None:
            connection.close()  # a broken SMTP session is reopened by the next send
        report_release(
            user_id=user.pk, kind=ReportKind.WEEKLY, period=week, token=token, error=f"{error}", now=timezone.now()
        )
        result.failed += 1
        return "failed"
    # The SMTP server has the message: mark it sent before anything else can fail.
    report_finish(
        user_id=user.pk, kind=ReportKind.WEEKLY, period=week, token=token, status=ReportStatus.SENT, wait_for_disk=False
    )
    if kind == "nudge":
        NotificationPreferences.objects.update_or_create(user=user, defaults={"last_nudge_at": now})
        result.nudged += 1
        return "nudged"
    result.sent += 1
    return "sent"


def weekly_reports_send_due(
    *,
    now: datetime | None = None,
    force: bool = False,
    email: str | None = None,
    dry_run: bool = False,
    batch_size: int = 200,
    time_budget: float | None = None,
    out: Callable[[str], None] | None = None,
    shard: tuple[int, int] | None = None,
) -> SweepResult:
    """Send every weekly report that is due now (`force`: due this week whatever the hour)."""
    now = now or timezone.now()
    result = SweepResult()
    started = monotonic_time.monotonic()
    failures_in_a_row = 0
    connection = None if dry_run else get_connection(fail_silently=False)
    try:
        for users in _batches(candidates(now=now, email=email, shard=shard), batch_size):
            result.considered += len(users)
            due = [(u, w) for u in users if (w := report_due_week(u, now, force=force)) is not None]
            done = _already_done(due, now)
            due = [(u, w) for u, w in due if u.pk not in done]
            result.not_claimed += len(done)
            result.due += len(due)
            if not due:
                continue
            teams_by_user, names = _teams_of([u for u, _ in due])
            all_team_ids = sorted({tid for u, _ in due for tid in teams_by_user.get(u.pk, [])})
            data = teams_report_data(all_team_ids, names, now)
            token, owned = (
                ("", set())
                if dry_run
                else reports_claim_bulk(wanted=[(u.pk, w) for u, w in due], kind=ReportKind.WEEKLY, now=now)
            )
            sections: dict[tuple[int, str], dict[str, Any]] = {}  # per batch: the data is per batch
            for user, week in due:
                teams = [data[tid] for tid in teams_by_user.get(user.pk, [])]
                outcome = _send_one(
                    user=user,
                    week=week,
                    teams=teams,
                    now=now,
                    result=result,
                    dry_run=dry_run,
                    connection=connection,
                    out=out,
                    token=token if dry_run or (user.pk, week) in owned else None,
                    sections=sections,
                )
                failures_in_a_row = failures_in_a_row + 1 if outcome == "failed" else 0
                if failures_in_a_row >= 5:
                    # SMTP is down: stop hammering it; the claims are released and retried later.
                    return result
            if time_budget is not None and monotonic_time.monotonic() - started > time_budget:
                break  # the next sweep continues where this one stopped
    finally:
        if connection is not None:
            connection.close()
    return result


def weekly_report_send_one(*, user_id: int, now: datetime | None = None) -> str:
    """Send one user's report of this week if due and not yet sent (for the per-user task)."""
    now = now or timezone.now()
    user = User.objects.select_related("notification_prefs").filter(pk=user_id).first()
    if user is None:
        return "no-user"
    result = weekly_reports_send_due(now=now, email=user.email)
    return "sent" if result.sent or result.nudged else "nothing"
