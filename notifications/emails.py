"""Emails of the notifications app, one function per kind (templates in templates/emails/)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse

from keychest import emails
from notifications.unsubscribe import headers_for
from notifications.wording import MAX_LISTED, event_label, summary_line

if TYPE_CHECKING:
    from keychest.accounts.models import User
    from notifications.models import Channel, Delivery, Event


def alert(*, to: str, channel: Channel, delivery: Delivery, events: Sequence[Event], unsubscribe_url: str) -> None:
    """One alert email; `unsubscribe_url` switches alert emails off for this recipient (RFC 8058)."""

    emails.send(
        "alert",
        to,
        {
            "team": channel.team,
            "channel": channel,
            "is_test": delivery.is_test,
            "summary": summary_line(channel.team.name, events, test=delivery.is_test),
            "events": [{"event": e, "label": event_label(e)} for e in events[:MAX_LISTED]],
            "more": max(0, len(events) - MAX_LISTED),
            "dashboard_url": settings.SITE_URL + reverse("dashboard"),
            "preferences_url": settings.SITE_URL + reverse("notification_preferences"),
            "unsubscribe_url": unsubscribe_url,
        },
        headers={
            **headers_for(unsubscribe_url),
            "Idempotency-Key": str(delivery.uuid),
            # Stable per (delivery, recipient): a resend after a crash between the SMTP server's
            # "250" and the delivery's row update is recognisably the same message (docs/reliability.md).
            "Message-ID": alert_message_id(delivery=delivery, to=to),
            "Auto-Submitted": "auto-generated",
        },
    )


def alert_message_id(*, delivery: Delivery, to: str) -> str:
    host = urlsplit(settings.SITE_URL).hostname or "keychest.local"
    recipient = hashlib.sha256(to.strip().lower().encode()).hexdigest()[:16]
    return f"<alert-{delivery.uuid}-{recipient}@{host}>"


def channel_disabled(*, to: list[str], channel: Channel, reason: str) -> None:
    emails.send(
        "channel_disabled",
        to,
        {
            "team": channel.team,
            "channel": channel,
            "reason": reason,
            "channel_url": settings.SITE_URL + reverse("channel_detail", args=[channel.uuid]),
        },
        headers={"Auto-Submitted": "auto-generated"},
    )


def report(
    *,
    kind: str,
    user: User,
    context: Mapping[str, Any],
    headers: Mapping[str, str],
    connection: Any = None,
) -> None:
    """The weekly report, the "please add servers" nudge and the daily digest share this shape."""
    emails.send(kind, user.notification_address(), context, headers=headers, connection=connection)
