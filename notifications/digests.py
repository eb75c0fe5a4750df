"""The daily alert summary for users who chose digest mode "daily summary".

Once per user per local day, at the user's report hour, claimed through the same unique
`ReportSend` row as the weekly report, so it is never doubled and never skipped by a crash.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import get_connection
from django.urls import reverse
from django.utils import timezone

from keychest.accounts.models import Membership, User
from notifications import emails
from notifications.models import (
    Channel,
    ChannelKind,
    DigestMode,
    Event,
    NotificationPreferences,
    ReportKind,
    ReportStatus,
)
from notifications.reports import (
    NEW_ACCOUNT_GRACE,
    absolute,
    message_id,
    report_claim,
    report_finish,
    report_release,
    scheduled_at,
)
from notifications.unsubscribe import unsubscribe_headers, unsubscribe_url
from notifications.wording import kind_label

log = logging.getLogger(__name__)
MAX_EVENTS = 200


def _digest_teams(user: User) -> list[int]:
    """Teams whose enabled email channels include this user."""
    team_ids = list(Membership.objects.filter(user=user).values_list("team_id", flat=True))
    channels = Channel.objects.filter(
        team_id__in=team_ids, kind=ChannelKind.EMAIL, enabled=True, deleted_at=None
    ).prefetch_related("email_members")
    chosen = set()
    for channel in channels:
        if channel.email_all_members or user in channel.email_members.all():
            chosen.add(channel.team_id)
    return sorted(chosen)


def digest_send(*, user: User, prefs: NotificationPreferences, now: datetime) -> str:
    zone = user.tzinfo
    today = now.astimezone(zone).date()
    due = scheduled_at(week=today, day=1, hour=prefs.weekly_report_hour, zone=zone)
    if now < due:
        return "not-due"
    token = report_claim(user_id=user.pk, kind=ReportKind.DIGEST, period=today, now=now)
    if token is None:
        return "not-claimed"
    team_ids = _digest_teams(user)
    events = list(
        Event.objects.filter(team_id__in=team_ids, occurred_at__gte=due - timedelta(days=1), occurred_at__lt=due)
        .select_related("team")
        .order_by("team__name", "occurred_at")[: MAX_EVENTS * 5]
    )
    events = [e for e in events if prefs.wants(e.alert_kind)]
    if not events:
        report_finish(user_id=user.pk, kind=ReportKind.DIGEST, period=today, token=token, status=ReportStatus.SKIPPED)
        return "skipped"
    by_team: dict[str, list[dict[str, str]]] = defaultdict(list)
    for event in events[:MAX_EVENTS]:
        by_team[event.team.name].append(
            {"label": kind_label(event.kind), "subject": event.subject, "when": absolute(event.occurred_at, zone)}
        )
    context = {
        "user": user,
        "day": today,
        "count": len(events),
        "more": max(0, len(events) - MAX_EVENTS),
        "teams": sorted(by_team.items()),
        "dashboard_url": settings.SITE_URL + reverse("dashboard"),
        "preferences_url": settings.SITE_URL + reverse("notification_preferences"),
        "unsubscribe_url": unsubscribe_url(user=user, what="digest"),
    }
    headers = {
        **unsubscribe_headers(user=user, what="digest"),
        "Message-ID": message_id(user=user, kind="digest", period=today),
        "Auto-Submitted": "auto-generated",
    }
    try:
        emails.report(kind="digest", user=user, context=context, headers=headers, connection=get_connection())
    except Exception as error:  # noqa: BLE001 - SMTP down: release and retry later
        report_release(user_id=user.pk, kind=ReportKind.DIGEST, period=today, token=token, error=str(error), now=now)
        return "failed"
    report_finish(user_id=user.pk, kind=ReportKind.DIGEST, period=today, token=token, status=ReportStatus.SENT)
    return "sent"


def digests_send_due(*, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    results: dict[str, int] = defaultdict(int)
    prefs_rows = NotificationPreferences.objects.filter(
        digest_mode=DigestMode.DAILY, user__is_active=True, user__date_joined__lte=now - NEW_ACCOUNT_GRACE
    ).select_related("user")
    for prefs in prefs_rows:
        results[digest_send(user=prefs.user, prefs=prefs, now=now)] += 1
    return dict(results)
