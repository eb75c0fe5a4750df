"""RFC 8058 one-click unsubscribe on alert emails, received over real SMTP (aiosmtpd)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from events.services import event_record
from notifications.models import Channel, ChannelKind, DigestMode, EventKind, NotificationPreferences
from notifications.services import channel_create, deliveries_send_due, events_dispatch
from tests.notifications.conftest import outside_address_confirmed

pytestmark = pytest.mark.django_db
SITE = "http://127.0.0.1:8000"


def _alert(team, name: str) -> None:
    event_record(team=team, kind=EventKind.CERTIFICATE_ISSUED, subject=f"{name}.example.com", dedup_key=f"ct:{name}")
    events_dispatch()
    deliveries_send_due(now=timezone.now() + timedelta(minutes=5))


def _link(message) -> str:
    header = message["List-Unsubscribe"].strip()
    assert header.startswith(f"<{SITE}/notifications/unsubscribe/") and header.endswith("/>")
    return header[1:-1].removeprefix(SITE)


@pytest.fixture
def channel(people) -> Channel:
    outside_address_confirmed(people.team_a, "noc@example.net")
    return channel_create(
        team=people.team_a, kind=ChannelKind.EMAIL, name="everyone", email_addresses="NOC@example.net"
    )


def test_every_alert_email_carries_one_click_unsubscribe_headers_and_links(people, channel, smtp) -> None:
    _alert(people.team_a, "first")
    by_address = {str(m["To"]): m for m in smtp.messages}
    assert sorted(by_address) == ["alice@example.org", "bob@example.org", "noc@example.net"]
    links = set()
    for message in by_address.values():
        link = _link(message)
        links.add(link)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert f"Unsubscribe from these alert emails: {SITE}{link}" in smtp.text(message)
        assert f'href="{SITE}{link}"' in smtp.html(message)
        # Only a signed token in the URL: no address, no certificate name.
        assert "example" not in link
    assert len(links) == 3  # one token per recipient


def test_one_click_post_switches_alert_emails_off_for_that_member_only(people, channel, smtp) -> None:
    _alert(people.team_a, "first")
    [to_alice] = smtp.to("alice@example.org")
    client = Client(enforce_csrf_checks=True)
    response = client.post(_link(to_alice), {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert b"You will no longer receive alert emails" in response.content
    assert NotificationPreferences.objects.get(user=people.alice).digest_mode == DigestMode.OFF
    assert not client.cookies.get("sessionid")
    _alert(people.team_a, "second")
    assert len(smtp.to("alice@example.org")) == 1
    assert len(smtp.to("bob@example.org")) == 2 and len(smtp.to("noc@example.net")) == 2


def test_get_on_an_alert_link_only_asks(people, channel, smtp) -> None:
    _alert(people.team_a, "first")
    [to_alice] = smtp.to("alice@example.org")
    [to_noc] = smtp.to("noc@example.net")
    for message, who in ((to_alice, b"alice@example.org"), (to_noc, b"noc@example.net")):
        response = Client().get(_link(message))
        assert response.status_code == 200
        assert b'<form method="post">' in response.content and who in response.content
    assert not NotificationPreferences.objects.filter(user=people.alice).exists()
    channel.refresh_from_db()
    assert channel.extra_addresses() == ["noc@example.net"]
    _alert(people.team_a, "second")
    assert len(smtp.to("alice@example.org")) == 2 and len(smtp.to("noc@example.net")) == 2


def test_an_extra_address_leaves_the_channel_by_one_click_post(people, channel, smtp) -> None:
    _alert(people.team_a, "first")
    [to_noc] = smtp.to("noc@example.net")
    response = Client(enforce_csrf_checks=True).post(_link(to_noc), {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and b"You will no longer receive alert emails" in response.content
    channel.refresh_from_db()
    assert channel.extra_addresses() == []
    # Posting again (a mail client retrying) is harmless.
    assert Client().post(_link(to_noc)).status_code == 200
    _alert(people.team_a, "second")
    assert len(smtp.to("noc@example.net")) == 1
    assert len(smtp.to("alice@example.org")) == 2


def test_an_address_token_cannot_be_bent_to_another_channel_or_forged(people, channel, smtp) -> None:
    outside_address_confirmed(people.team_b, "noc@example.net")
    other = channel_create(team=people.team_b, kind=ChannelKind.EMAIL, name="ops", email_addresses="noc@example.net")
    _alert(people.team_a, "first")
    [to_noc] = smtp.to("noc@example.net")
    link = _link(to_noc)
    token = link.removeprefix("/notifications/unsubscribe/").removesuffix("/")
    for bad in (token[:-2] + "xx", token.replace(":", ""), token + "x"):
        assert Client().post(f"/notifications/unsubscribe/{bad}/").status_code == 404
    assert Client().post(link).status_code == 200
    other.refresh_from_db()
    channel.refresh_from_db()
    assert other.extra_addresses() == ["noc@example.net"] and channel.extra_addresses() == []
