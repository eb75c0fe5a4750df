"""Alert delivery: events → deliveries per channel → attempts, with claims that survive crashes.

- `events_dispatch` attaches new events to the collecting delivery of every matching channel
  (a burst arriving within the channel's grouping window becomes one message).
- `delivery_send` claims one due delivery atomically (a compare-and-set UPDATE), sends it through
  the channel's transport, records the attempt, and on failure schedules the next try with
  exponential back-off; after 24 h or a permanent error the channel is disabled and its
  team's owners are told. A worker that dies mid-send leaves a claim that runs out, and the
  next sweep takes the delivery over: late, never lost.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from keychest import ratelimit
from keychest.accounts.models import Membership, Role
from keychest.secretbox import seal
from notifications import emails
from notifications.apprise_urls import apprise_url_check
from notifications.models import (
    Channel,
    ChannelKind,
    Delivery,
    DeliveryAttempt,
    DeliveryItem,
    DeliveryStatus,
    Event,
    EventKind,
    NotificationPreferences,
    new_channel_secret,
)
from notifications.recipients import recipients_confirm_request
from notifications.transports import Outcome, transport_for
from notifications.wording import collapse

if TYPE_CHECKING:
    from keychest.accounts.models import Team, User

log = logging.getLogger(__name__)
# The tasks services queue, by their registered names (notifications/tasks.py pins them).
EVENTS_DISPATCH_TASK = "notifications.tasks.events_dispatch_task"
DELIVERY_SEND_TASK = "notifications.tasks.delivery_send_task"

# Back-off: 1 min, 2, 4, … capped at 2 h per step, until KEYCHEST_DELIVERY_GIVE_UP_SECONDS.
BACKOFF_FIRST_SECONDS = 60
BACKOFF_MAX_SECONDS = 7200


def backoff_seconds(attempts: int) -> float:
    base = min(BACKOFF_FIRST_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)
    return base * random.uniform(0.9, 1.1)


def task_send(name: str, *args: Any, countdown: float | None = None) -> None:
    """Queue a Celery task by its registered name (tasks import services, never the reverse).

    Best effort: if the broker is unreachable the periodic sweeps pick the rows up anyway,
    because the state lives in the database, not in the queue.
    """
    try:
        # Capped below the broker's visibility timeout (a longer wait would be handed out
        # twice); a task that runs early finds its row not yet due, and the sweep sends it.
        wait = None if countdown is None else min(countdown, settings.KEYCHEST_MAX_COUNTDOWN)
        current_app.signature(name, args=args).apply_async(countdown=wait, retry=False)
    except Exception:  # the sweep delivers what the queue could not
        log.warning("could not enqueue %s; the periodic sweep will pick it up", name, exc_info=True)


def enqueue_after_commit(name: str, *args: Any, countdown: float | None = None) -> None:
    """Queue a Celery task (by name) once the surrounding transaction commits."""
    transaction.on_commit(functools.partial(task_send, name, *args, countdown=countdown))


def events_dispatch_soon() -> None:
    """Queue the dispatcher; `events.services` calls this after a commit that recorded events."""
    task_send(EVENTS_DISPATCH_TASK)


# --- channels -------------------------------------------------------------------------------
def channel_create(
    *,
    team: Team,
    kind: str,
    name: str,
    url: str = "",
    email_all_members: bool = True,
    email_members: Iterable[User] = (),
    email_addresses: str = "",
    event_kinds: Iterable[str] = (),
    rate_limit_per_hour: int = 20,
    grouping_seconds: int = 60,
    apprise_url: str = "",
) -> Channel:
    """A new channel; an Apprise channel's URL is checked (InvalidAppriseUrl), sealed and masked."""
    kinds = sorted(set(event_kinds) & set(EventKind.values))
    sealed = masked = ""
    if kind == ChannelKind.APPRISE:
        masked = apprise_url_check(apprise_url)
        sealed = seal(apprise_url.strip())
    with transaction.atomic():
        channel = Channel.objects.create(
            team=team,
            kind=ChannelKind(kind),
            name=name.strip()[:100] or ChannelKind(kind).label,
            url=url.strip(),
            email_all_members=email_all_members,
            email_addresses=email_addresses.strip(),
            event_kinds=kinds,
            rate_limit_per_hour=max(1, rate_limit_per_hour),
            grouping_seconds=max(0, grouping_seconds),
            apprise_url_sealed=sealed,
            apprise_url_masked=masked,
        )
        members = list(email_members)
        if members:
            channel.email_members.set(members)
        if channel.kind == ChannelKind.EMAIL:
            recipients_confirm_request(channel=channel)
    return channel


DEFAULT_CHANNEL_NAME = "Email every member"


def channel_default_create(*, team: Team) -> Channel:
    """The channel every new team starts with: an email to every member, every alert kind
    (each member's own preferences then choose kinds and immediate or daily)."""
    return channel_create(team=team, kind=ChannelKind.EMAIL, name=DEFAULT_CHANNEL_NAME, email_all_members=True)


def channel_delete(*, channel: Channel) -> None:
    """Soft delete: deliveries and attempts keep pointing at it; nothing more is sent."""
    Channel.objects.filter(pk=channel.pk).update(deleted_at=timezone.now(), enabled=False)
    Delivery.objects.filter(channel=channel, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.FAILED, collecting=False, last_error="channel deleted"
    )


def channel_enable(*, channel: Channel) -> None:
    Channel.objects.filter(pk=channel.pk, deleted_at=None).update(enabled=True, disabled_at=None, disabled_reason="")


def channel_remove_address(*, channel: Channel, address: str) -> bool:
    """Take one extra address off an email channel (its one-click unsubscribe); True if it was on."""
    wanted = address.strip().lower()
    with transaction.atomic():
        locked = Channel.objects.select_for_update().get(pk=channel.pk)
        lines = [line.strip() for line in locked.email_addresses.splitlines() if line.strip()]
        kept = [line for line in lines if line.lower() != wanted]
        if len(kept) == len(lines):
            return False
        locked.email_addresses = "\n".join(kept)
        locked.save(update_fields=["email_addresses"])
    channel.email_addresses = locked.email_addresses
    return True


def channel_rotate_secret(*, channel: Channel) -> str:
    channel.secret = new_channel_secret()
    channel.save(update_fields=["secret"])
    return channel.secret


def channel_disable(*, channel: Channel, reason: str, notify_owners: bool = True) -> None:
    """Disable (after a permanent failure, or by hand) and tell the team's owners (once)."""
    with transaction.atomic():
        changed = Channel.objects.filter(pk=channel.pk, enabled=True).update(
            enabled=False, disabled_at=timezone.now(), disabled_reason=reason[:500]
        )
        # Pending deliveries of a disabled channel will not be sent; keep them readable.
        Delivery.objects.filter(channel=channel, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.FAILED, collecting=False, last_error="channel disabled"
        )
        if changed and notify_owners:
            enqueue_after_commit("notifications.tasks.channel_disabled_email_task", channel.pk)


def channel_disabled_notify_owners(*, channel_id: int) -> None:
    channel = Channel.objects.select_related("team").get(pk=channel_id)
    owners = [
        m.user.notification_address()
        for m in Membership.objects.filter(team=channel.team, role=Role.OWNER).select_related("user")
        if m.user.is_active
    ]
    if owners:
        emails.channel_disabled(to=owners, channel=channel, reason=channel.disabled_reason)


class ChannelRateLimited(Exception):
    """The channel sent as many messages this hour as its rate limit allows."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"this channel's rate limit is spent; try again in {retry_after} seconds")
        self.retry_after = retry_after


def _channel_limit(channel: Channel) -> ratelimit.Limit:
    return ratelimit.Limit("notify-channel", channel.rate_limit_per_hour, 3600)


def channel_send_test(*, channel: Channel) -> Delivery:
    """A test delivery with no events, sent right away through the normal path. It counts
    against the channel's rate limit like any message (security finding 7: test sends relayed
    spam); raises ChannelRateLimited when the limit is spent."""
    verdict = ratelimit.hit(_channel_limit(channel), str(channel.uuid))
    if not verdict.allowed:
        raise ChannelRateLimited(verdict.retry_after)
    with transaction.atomic():
        if channel.kind == ChannelKind.EMAIL:
            recipients_confirm_request(channel=channel)  # ask again those who have not answered
        delivery = Delivery.objects.create(
            team_id=channel.team_id, channel=channel, is_test=True, collecting=False, send_after=timezone.now()
        )
        enqueue_after_commit(DELIVERY_SEND_TASK, delivery.pk)
    return delivery


# --- events → deliveries ------------------------------------------------------------------
def _collecting_delivery(channel: Channel, now: datetime) -> Delivery:
    """The channel's collecting delivery, created if none; safe against a concurrent dispatcher."""
    for _ in range(3):
        existing = Delivery.objects.select_for_update().filter(channel=channel, collecting=True).first()
        if existing is not None:
            return existing
        try:
            with transaction.atomic():
                return Delivery.objects.create(
                    team_id=channel.team_id,
                    channel=channel,
                    send_after=now + timedelta(seconds=channel.grouping_seconds),
                )
        except IntegrityError:
            continue  # another dispatcher created it a moment ago
    raise RuntimeError(f"could not get a collecting delivery for channel {channel.pk}")


def events_dispatch(*, limit: int = 1000, now: datetime | None = None) -> list[int]:
    """Attach undispatched events to their channels' deliveries; returns the deliveries touched."""
    now = now or timezone.now()
    touched: set[int] = set()
    with transaction.atomic():
        events = list(
            Event.objects.select_for_update(skip_locked=True).filter(dispatched_at=None).order_by("id")[:limit]
        )
        if not events:
            return []
        by_team: dict[int, list[Event]] = defaultdict(list)
        for event in events:
            by_team[event.team_id].append(event)
        channels = Channel.objects.filter(team_id__in=by_team, enabled=True, deleted_at=None).order_by("id")
        items: list[DeliveryItem] = []
        for channel in channels:
            matching = [e for e in by_team[channel.team_id] if channel.carries(e.alert_kind)]
            if not matching:
                continue
            delivery = _collecting_delivery(channel, now)
            touched.add(delivery.pk)
            items.extend(DeliveryItem(delivery=delivery, event=e, channel=channel) for e in matching)
        # (channel, event) is unique: an event dispatched twice is attached once.
        DeliveryItem.objects.bulk_create(items, ignore_conflicts=True, batch_size=1000)
        Event.objects.filter(pk__in=[e.pk for e in events]).update(dispatched_at=now)
        if touched:
            for delivery in Delivery.objects.filter(pk__in=touched).only("pk", "send_after"):
                wait = max((delivery.send_after - now).total_seconds(), 0)
                enqueue_after_commit(DELIVERY_SEND_TASK, delivery.pk, countdown=wait)
    return sorted(touched)


# --- sending ---------------------------------------------------------------------------------
def _claim(delivery_id: int, now: datetime) -> bool:
    """Compare-and-set: exactly one worker wins a due delivery (or takes over a stale claim)."""
    lease = timedelta(seconds=settings.KEYCHEST_NOTIFY_CLAIM_SECONDS)
    claimable = Q(status=DeliveryStatus.PENDING) | Q(status=DeliveryStatus.SENDING, claimed_until__lt=now)
    return bool(
        Delivery.objects.filter(claimable, pk=delivery_id, send_after__lte=now).update(
            status=DeliveryStatus.SENDING, collecting=False, claimed_until=now + lease, attempts=F("attempts") + 1
        )
    )


def delivery_send(*, delivery_id: int, now: datetime | None = None) -> str:
    """Send one delivery if it is due and unclaimed; returns what happened (for logs and tests)."""
    now = now or timezone.now()
    if not _claim(delivery_id, now):
        return "not-due-or-claimed"
    delivery = Delivery.objects.select_related("channel", "channel__team").get(pk=delivery_id)
    channel = delivery.channel
    if not channel.enabled or channel.deleted_at is not None:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED, claimed_until=None, last_error="channel disabled"
        )
        return "channel-disabled"
    if not delivery.is_test:
        # (A test send was counted when it was asked for.)
        verdict = ratelimit.hit(_channel_limit(channel), str(channel.uuid), now=now.timestamp())
        if not verdict.allowed:
            # Not an attempt: give the claim back and wait for the next window.
            Delivery.objects.filter(pk=delivery.pk).update(
                status=DeliveryStatus.PENDING,
                claimed_until=None,
                attempts=F("attempts") - 1,
                send_after=now + timedelta(seconds=verdict.retry_after),
            )
            return "rate-limited"
    events = collapse(list(delivery.events.order_by("occurred_at", "id")))
    if not events and not delivery.is_test:
        Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENT, sent_at=now, claimed_until=None)
        return "empty"
    first_attempt_at = delivery.first_attempt_at or now
    started = time.monotonic()
    try:
        outcome = transport_for(channel).notify(channel, delivery, events)
    except Exception as error:  # a transport bug must not lose the delivery
        log.exception("transport %s failed on delivery %s", channel.kind, delivery.pk)
        outcome = Outcome(ok=False, error=f"{type(error).__name__}: {error}"[:500])
    duration_ms = int((time.monotonic() - started) * 1000)
    DeliveryAttempt.objects.create(
        delivery=delivery,
        started_at=now,
        duration_ms=duration_ms,
        ok=outcome.ok,
        permanent=outcome.permanent,
        status_code=outcome.status_code,
        error=outcome.error[:500],
    )
    if outcome.ok:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.SENT, sent_at=timezone.now(), claimed_until=None, first_attempt_at=first_attempt_at
        )
        return "sent"
    give_up_at = first_attempt_at + timedelta(seconds=settings.KEYCHEST_DELIVERY_GIVE_UP_SECONDS)
    next_at = now + timedelta(seconds=backoff_seconds(delivery.attempts))
    if delivery.is_test:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED,
            claimed_until=None,
            first_attempt_at=first_attempt_at,
            last_error=outcome.error,
        )
        return "test-failed"
    if outcome.permanent or next_at > give_up_at:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.FAILED,
            claimed_until=None,
            first_attempt_at=first_attempt_at,
            last_error=outcome.error,
        )
        why = "permanent error" if outcome.permanent else "still failing after 24 hours of retries"
        channel_disable(channel=channel, reason=f"{why}: {outcome.error}")
        return "failed"
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.PENDING,
        claimed_until=None,
        first_attempt_at=first_attempt_at,
        send_after=next_at,
        last_error=outcome.error,
    )
    enqueue_after_commit(DELIVERY_SEND_TASK, delivery.pk, countdown=(next_at - now).total_seconds())
    return "retry"


def deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Deliveries a sweep should try: due pending ones and those whose claim ran out."""
    now = now or timezone.now()
    due = Q(status=DeliveryStatus.PENDING, send_after__lte=now) | Q(
        status=DeliveryStatus.SENDING, claimed_until__lt=now
    )
    return list(Delivery.objects.filter(due).order_by("send_after").values_list("pk", flat=True)[:limit])


def deliveries_send_due(*, now: datetime | None = None) -> dict[str, int]:
    results: dict[str, int] = defaultdict(int)
    for delivery_id in deliveries_due(now=now):
        results[delivery_send(delivery_id=delivery_id, now=now)] += 1
    return dict(results)


# --- per-user preferences -------------------------------------------------------------------
def alert_email_reach(*, user: User) -> list[tuple[Team, list[Channel]]]:
    """Per team of the user: the enabled email channels that would mail them. An empty list is
    a team whose alerts never reach this user by email (the preferences page says so)."""
    memberships = list(Membership.objects.filter(user=user).select_related("team").order_by("team__name", "id"))
    channels = Channel.objects.filter(
        team_id__in=[m.team_id for m in memberships], kind=ChannelKind.EMAIL, enabled=True, deleted_at=None
    ).filter(Q(email_all_members=True) | Q(email_members=user))
    by_team: dict[int, list[Channel]] = defaultdict(list)
    for channel in channels.distinct().order_by("name", "id"):
        by_team[channel.team_id].append(channel)
    return [(m.team, by_team[m.team_id]) for m in memberships]


def preferences_for(*, user: User) -> NotificationPreferences:
    prefs, _ = NotificationPreferences.objects.get_or_create(user=user)
    return prefs


def preferences_update(*, user: User, **values: Any) -> NotificationPreferences:
    prefs = preferences_for(user=user)
    allowed = {
        "weekly_report_enabled",
        "weekly_report_day",
        "weekly_report_hour",
        "send_all_good",
        "alert_kinds",
        "digest_mode",
    }
    unknown = set(values) - allowed
    if unknown:
        raise TypeError(f"unknown preferences: {sorted(unknown)}")
    if "alert_kinds" in values:
        values["alert_kinds"] = sorted(set(values["alert_kinds"]) & set(EventKind.values))
    for name, value in values.items():
        setattr(prefs, name, value)
    prefs.full_clean(exclude=["user"])
    prefs.save()
    return prefs
