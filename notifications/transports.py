"""Channel transports: one class per channel kind, each with one `notify()`.

As in healthchecks' `Transport` classes, a transport only sends; the caller (services) records
the attempt, decides about back-off and disables a channel after a permanent failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.urls import reverse

from kcproto import netguard, socketguard
from keychest.safehttp import FetchError, TargetRefused, post_json
from keychest.secretbox import SecretUnreadable
from notifications import emails
from notifications.apprise_urls import InvalidAppriseUrl, apprise_plugin, apprise_secrets
from notifications.models import Channel, ChannelKind, DigestMode, NotificationPreferences, Severity
from notifications.recipients import confirmed_addresses
from notifications.unsubscribe import address_unsubscribe_url, unsubscribe_url
from notifications.wording import MAX_LISTED, event_label, summary_line

if TYPE_CHECKING:
    from keychest.accounts.models import User
    from notifications.models import Delivery, Event

SIGNATURE_HEADER = "X-KeyChest-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class Outcome:
    """What one `notify()` achieved; `permanent` failures are not retried."""

    ok: bool
    permanent: bool = False
    status_code: int | None = None
    error: str = ""


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": str(event.uuid),
        # Stable across retries and across channels: receivers drop what they have already seen.
        "idempotency_key": str(event.uuid),
        "kind": event.kind,
        # What channel and user filters match: expiry findings count as certificate_expiring/expired.
        "alert_kind": event.alert_kind,
        "severity": event.severity,
        "subject": event.subject,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
        "payload": event.payload,
    }


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Transport:
    kind: ClassVar[str]

    def notify(self, channel: Channel, delivery: Delivery, events: Sequence[Event]) -> Outcome:
        raise NotImplementedError


class _HttpTransport(Transport):
    def body(self, channel: Channel, delivery: Delivery, events: Sequence[Event]) -> bytes:
        raise NotImplementedError

    def headers(self, channel: Channel, delivery: Delivery, body: bytes) -> dict[str, str]:
        return {"User-Agent": "KeyChest-Notifications/1"}

    def notify(self, channel: Channel, delivery: Delivery, events: Sequence[Event]) -> Outcome:
        body = self.body(channel, delivery, events)
        try:
            result = post_json(
                channel.url,
                body,
                self.headers(channel, delivery, body),
                allow_private=settings.KEYCHEST_ALLOW_PRIVATE_TARGETS,
                timeout=settings.KEYCHEST_WEBHOOK_TIMEOUT,
            )
        except TargetRefused as error:
            return Outcome(ok=False, permanent=True, error=f"refused: {error}")
        except (FetchError, OSError, ValueError) as error:  # network trouble: retried with back-off
            return Outcome(ok=False, error=f"{type(error).__name__}: {error}"[:500])
        if 200 <= result.status < 300:
            return Outcome(ok=True, status_code=result.status)
        # 4xx means the receiver rejects this request as such (gone, forbidden, bad URL): retrying
        # will not help. 408 and 429 are the receiver asking us to come back later.
        permanent = 400 <= result.status < 500 and result.status not in (408, 425, 429)
        return Outcome(
            ok=False, permanent=permanent, status_code=result.status, error=f"HTTP {result.status}: {result.text[:200]}"
        )


class WebhookTransport(_HttpTransport):
    """JSON POST signed with HMAC-SHA256 over the exact body bytes."""

    kind = ChannelKind.WEBHOOK

    def body(self, channel: Channel, delivery: Delivery, events: Sequence[Event]) -> bytes:
        document = {
            "type": "keychest.test" if delivery.is_test else "keychest.alerts",
            "delivery_id": str(delivery.uuid),
            "team": {"id": str(channel.team.uuid), "name": channel.team.name},
            "channel": {"id": str(channel.uuid), "name": channel.name},
            "summary": summary_line(channel.team.name, events, test=delivery.is_test),
            "events": [event_json(e) for e in events],
            "sent_at": datetime.now(UTC).isoformat(),
        }
        return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()

    def headers(self, channel: Channel, delivery: Delivery, body: bytes) -> dict[str, str]:
        return {
            **super().headers(channel, delivery, body),
            SIGNATURE_HEADER: sign(channel.secret, body),
            # The same for every retry of this message.
            IDEMPOTENCY_HEADER: str(delivery.uuid),
        }


def slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters; certificate names are attacker-controlled."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackTransport(_HttpTransport):
    """Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): `{"text": ...}`."""

    kind = ChannelKind.SLACK

    def body(self, channel: Channel, delivery: Delivery, events: Sequence[Event]) -> bytes:
        lines = [f"*{slack_escape(summary_line(channel.team.name, events, test=delivery.is_test))}*"]
        if delivery.is_test:
            lines.append("KeyChest can reach this channel.")
        for event in events[:MAX_LISTED]:
            lines.append(f"• {slack_escape(event_label(event))}: `{slack_escape(event.subject)}`")
        if len(events) > MAX_LISTED:
            lines.append(f"… and {len(events) - MAX_LISTED} more")
        lines.append(f"<{settings.SITE_URL}{reverse('dashboard')}|Open KeyChest>")
        return json.dumps({"text": "\n".join(lines)}).encode()


@dataclass(frozen=True)
class Recipient:
    """An alert email's reader: the events they want, and their account (None: an extra address)."""

    events: list[Event]
    user: User | None = None

    def unsubscribe_url(self, channel: Channel, address: str) -> str:
        """Members switch their alert emails off; an extra address leaves this channel."""
        if self.user is not None:
            return unsubscribe_url(user=self.user, what="alerts")
        return address_unsubscribe_url(channel=channel, address=address)


class EmailTransport(Transport):
    """One email per recipient, holding only the event kinds that recipient wants."""

    kind = ChannelKind.EMAIL

    def recipients(self, channel: Channel, events: Sequence[Event], *, test: bool = False) -> dict[str, Recipient]:
        """Who gets this message. A test reaches every member of the channel whatever their kinds
        and digest mode (it checks the channel, not their filters); only members who switched
        alert emails off (their one-click unsubscribe) are left out."""
        chosen: dict[str, Recipient] = {}
        members = (
            channel.team.memberships.select_related("user")
            if channel.email_all_members
            else channel.team.memberships.select_related("user").filter(user__in=channel.email_members.all())
        )
        users = [m.user for m in members if m.user.is_active]
        prefs = {p.user_id: p for p in NotificationPreferences.objects.filter(user__in=users)}
        for user in users:
            pref = prefs.get(user.pk)
            if test:
                if pref is None or pref.digest_mode != DigestMode.OFF:
                    chosen.setdefault(user.notification_address().lower(), Recipient([], user))
                continue
            if pref is not None and pref.digest_mode != DigestMode.IMMEDIATE:
                continue  # the daily digest carries these, or the user wants no alert emails
            wanted = [e for e in events if pref is None or pref.wants(e.alert_kind)]
            if wanted:
                chosen.setdefault(user.notification_address().lower(), Recipient(wanted, user))
        # Outside addresses get nothing until their holder confirmed (security finding 7).
        extra = channel.extra_addresses()
        allowed = confirmed_addresses(channel.team, extra)
        for address in extra:
            if address in allowed:
                chosen.setdefault(address, Recipient(list(events)))
        return chosen

    def notify(self, channel: Channel, delivery: Delivery, events: Sequence[Event]) -> Outcome:
        recipients = self.recipients(channel, events, test=delivery.is_test)
        if delivery.is_test and not recipients:
            return Outcome(
                ok=False,
                error="nobody to send to: every member switched alert emails off and the channel has no extra "
                "addresses; add an address or ask a member to switch alert emails on in their preferences",
            )
        done = set(delivery.sent_to)
        for address, recipient in recipients.items():
            if address in done:
                continue
            try:
                emails.alert(
                    to=address,
                    channel=channel,
                    delivery=delivery,
                    events=recipient.events,
                    unsubscribe_url=recipient.unsubscribe_url(channel, address),
                )
            except Exception as error:  # noqa: BLE001 - any SMTP/socket failure is retried later
                return Outcome(ok=False, error=f"{address}: {type(error).__name__}: {error}"[:500])
            done.add(address)
            delivery.sent_to = sorted(done)
            # Remember progress now: a retry after a failure on the next address skips this one.
            type(delivery).objects.filter(pk=delivery.pk).update(sent_to=delivery.sent_to)
        return Outcome(ok=True)


# --- Apprise ------------------------------------------------------------------------------
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _apprise_line(text: str) -> str:
    return _CONTROL_CHARS.sub("", text)


def apprise_message(channel: Channel, delivery: Delivery, events: Sequence[Event]) -> tuple[str, str, str]:
    """(title, body, Apprise notify type) in plain text; Apprise converts it for each service
    (escaping it for HTML or Markdown ones). Subjects come from certificates: no control characters."""
    title = summary_line(channel.team.name, events, test=delivery.is_test)
    lines = ["KeyChest can reach this channel."] if delivery.is_test else []
    lines += [f"- {event_label(e)}: {_apprise_line(e.subject)[:300]}" for e in events[:MAX_LISTED]]
    if len(events) > MAX_LISTED:
        lines.append(f"… and {len(events) - MAX_LISTED} more")
    lines.append(f"{settings.SITE_URL}{reverse('dashboard')}")
    severities = {e.severity for e in events}
    kind = "info"  # Apprise's NotifyType values
    if severities & {Severity.ERROR, Severity.CRITICAL}:
        kind = "failure"
    elif Severity.WARNING in severities:
        kind = "warning"
    return title, "\n".join(lines), kind


class AppriseTransport(Transport):
    """Sends through the Apprise service named by the channel's sealed URL, under the socket guard."""

    kind = ChannelKind.APPRISE

    def notify(self, channel: Channel, delivery: Delivery, events: Sequence[Event]) -> Outcome:
        try:
            url = channel.apprise_url()
            plugin = apprise_plugin(url)
        except (SecretUnreadable, InvalidAppriseUrl) as error:
            return Outcome(ok=False, permanent=True, error=str(error))
        timeout = float(settings.KEYCHEST_WEBHOOK_TIMEOUT)
        # The URL may ask for long timeouts (?cto=, ?rto=); the deployment's bound wins.
        plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout or timeout), timeout)
        plugin.socket_read_timeout = min(float(plugin.socket_read_timeout or timeout), timeout)
        title, body, notify_type = apprise_message(channel, delivery, events)
        policy = socketguard.Policy(
            allow_private=settings.KEYCHEST_ALLOW_PRIVATE_TARGETS,
            timeout=timeout,
            nameservers=netguard.parse_nameservers(settings.KEYCHEST_DNS_NAMESERVERS),
            secrets=apprise_secrets(url),
        )
        result = socketguard.guarded_call(
            lambda: plugin.notify(title=title, body=body, notify_type=notify_type, body_format="text"), policy
        )
        if policy.refused:
            return Outcome(ok=False, permanent=True, error=policy.redact(f"refused: {policy.refused[0]}")[:500])
        if result.timed_out:
            return Outcome(ok=False, error=f"no answer within {timeout:g} s")
        if result.error is not None:
            return Outcome(ok=False, error=policy.redact(f"{type(result.error).__name__}: {result.error}")[:500])
        if result.value:
            return Outcome(ok=True)
        why = policy.warnings[-1] if policy.warnings else "the service did not accept the message"
        return Outcome(ok=False, error=why[:500])


TRANSPORTS: dict[str, Transport] = {
    t.kind: t for t in (EmailTransport(), WebhookTransport(), SlackTransport(), AppriseTransport())
}


def transport_for(channel: Channel) -> Transport:
    return TRANSPORTS[channel.kind]
