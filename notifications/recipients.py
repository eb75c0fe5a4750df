"""Outside recipients of email channels confirm before they get anything (security finding 7).

An address is inside a team when it belongs to a member (a verified address of theirs, or their
confirmed notification email); any other address on an email channel is outside. An outside
address gets one confirmation email (keychest.accounts.services.address_confirmation_send: no
text of the team's in it, a daily budget per address) and no alert, test or digest until its
holder confirms through the link.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils import timezone

from keychest.accounts.models import Team, User
from keychest.accounts.services import CONFIRMATION_MAX_AGE_DAYS, address_confirmation_send
from notifications.models import Channel, RecipientConfirmation

RECIPIENT_SALT = "keychest.notifications.recipient"
# One team asks one address at most once a day (the address's own budget covers all teams).
RESEND_AFTER = timedelta(days=1)


def inside_addresses(team: Team) -> set[str]:
    """Addresses of the team's members: verified ones, and confirmed notification emails."""
    users = User.objects.filter(memberships__team=team, is_active=True)
    verified = EmailAddress.objects.filter(user__in=users, verified=True).values_list("email", flat=True)
    notification = users.exclude(notification_email="").exclude(notification_email_confirmed_at=None)
    return {e.lower() for e in verified} | {
        e.lower() for e in notification.values_list("notification_email", flat=True)
    }


def confirmed_addresses(team: Team, addresses: Iterable[str]) -> set[str]:
    """Those of `addresses` that may receive the team's mail."""
    wanted = {a.lower() for a in addresses}
    if not wanted:
        return set()
    confirmed = RecipientConfirmation.objects.filter(team=team, email__in=wanted).exclude(confirmed_at=None)
    return (wanted & inside_addresses(team)) | set(confirmed.values_list("email", flat=True))


def recipients_confirm_request(*, channel: Channel) -> list[str]:
    """Ask each outside address of the channel that has not confirmed (at most once a day per
    team and address); returns the addresses asked. Call inside the caller's transaction."""
    addresses = channel.extra_addresses()
    allowed = confirmed_addresses(channel.team, addresses)
    now = timezone.now()
    asked = []
    for address in addresses:
        if address in allowed:
            continue
        row, _ = RecipientConfirmation.objects.get_or_create(team_id=channel.team_id, email=address)
        if row.last_sent_at is not None and now - row.last_sent_at < RESEND_AFTER:
            continue
        token = signing.dumps(str(row.uuid), salt=RECIPIENT_SALT)
        link = settings.SITE_URL + reverse("recipient_confirm", args=[token])
        if address_confirmation_send(to=address, link=link, purpose="team"):
            RecipientConfirmation.objects.filter(pk=row.pk).update(last_sent_at=now)
            asked.append(address)
    return asked


def recipient_from_token(token: str) -> RecipientConfirmation | None:
    try:
        public_id = signing.loads(token, salt=RECIPIENT_SALT, max_age=CONFIRMATION_MAX_AGE_DAYS * 86400)
    except signing.BadSignature:
        return None
    return RecipientConfirmation.objects.filter(uuid=public_id).first()


def recipient_confirm(*, confirmation: RecipientConfirmation) -> None:
    RecipientConfirmation.objects.filter(pk=confirmation.pk, confirmed_at=None).update(confirmed_at=timezone.now())


def waiting_addresses(channel: Channel) -> list[str]:
    """The channel's outside addresses that have not confirmed (for the channel page)."""
    addresses = channel.extra_addresses()
    return sorted(set(addresses) - confirmed_addresses(channel.team, addresses))
