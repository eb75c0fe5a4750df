"""Security finding 7: new outside recipients (addresses on an email channel, a user's
notification_email) get one confirmation email first, with no text of the asker's in it, and
nothing else until they confirm. Driven through HTTP with a real SMTP server."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils import timezone

from keychest.accounts.models import User
from notifications.models import ChannelKind, Delivery
from notifications.services import channel_create, delivery_send
from tests.conftest import People

pytestmark = pytest.mark.django_db

PHISHING = "URGENT: your bank account is locked, call +1 555 0100"


def _send_queued_tests() -> None:
    for delivery in Delivery.objects.filter(is_test=True, sent_at=None, status="pending"):
        delivery_send(delivery_id=delivery.pk, now=timezone.now())


def _link(smtp, address: str) -> str:  # type: ignore[no-untyped-def]
    [message] = smtp.to(address)
    match = re.search(r"https?://[^/\s]+(/\S+/)", smtp.text(message))
    assert match
    return match.group(1)


def _create_channel(client: Client, addresses: list[str], django_capture_on_commit_callbacks) -> str:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/channels/",
            {"kind": "email", "name": PHISHING, "email_all_members": False, "email_addresses": "\n".join(addresses)},
            content_type="application/json",
        )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_outside_channel_addresses_get_only_a_confirmation_until_they_confirm(
    people: People, alice_client: Client, smtp, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    outside = [f"victim{i}@example.net" for i in range(3)]
    channel_id = _create_channel(alice_client, outside, django_capture_on_commit_callbacks)
    for address in outside:
        [message] = smtp.to(address)
        assert "Confirm" in message["Subject"]
        assert PHISHING not in smtp.text(message) and "Team A" not in smtp.text(message)

    with django_capture_on_commit_callbacks(execute=True):
        assert alice_client.post(f"/api/v1/channels/{channel_id}/test/").status_code == 202
    _send_queued_tests()
    assert [len(smtp.to(a)) for a in outside] == [1, 1, 1], "a test reaches nobody who has not confirmed"

    link = _link(smtp, outside[0])
    holder = Client()
    assert "Confirm" in holder.get(link).content.decode()
    assert holder.post(link).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert alice_client.post(f"/api/v1/channels/{channel_id}/test/").status_code == 202
    _send_queued_tests()
    assert len(smtp.to(outside[0])) == 2 and "test message" in smtp.text(smtp.to(outside[0])[1])
    assert [len(smtp.to(a)) for a in outside[1:]] == [1, 1]


def test_members_addresses_need_no_confirmation(people: People, smtp, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        channel = channel_create(
            team=people.team_a,
            kind=ChannelKind.EMAIL,
            name="ops",
            email_all_members=False,
            email_addresses="bob@example.org",
        )
    assert smtp.messages == []
    from notifications.services import channel_send_test

    with django_capture_on_commit_callbacks(execute=True):
        channel_send_test(channel=channel)
    _send_queued_tests()
    assert len(smtp.to("bob@example.org")) == 1


def test_confirmation_emails_to_one_address_are_limited(
    people: People, alice_client: Client, smtp, django_capture_on_commit_callbacks, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.KEYCHEST_CONFIRMATIONS_PER_ADDRESS_PER_DAY = 2
    from keychest.accounts.services import team_create

    for i in range(5):
        team = team_create(name=f"T{i}", owner=people.alice)
        with django_capture_on_commit_callbacks(execute=True):
            channel_create(team=team, kind=ChannelKind.EMAIL, name="x", email_addresses="victim@example.net")
    assert len(smtp.to("victim@example.net")) == 2


def test_a_notification_email_gets_only_a_confirmation_until_confirmed(
    people: People, bob_client: Client, smtp, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        response = bob_client.post(
            "/account/preferences/", {"timezone": "UTC", "notification_email": "someone-else@example.net"}
        )
    assert response.status_code == 302
    [message] = smtp.to("someone-else@example.net")
    assert "Confirm" in message["Subject"]
    bob = User.objects.get(pk=people.bob.pk)
    assert bob.notification_address() == "bob@example.org"
    assert "Waiting for confirmation" in bob_client.get("/account/preferences/").content.decode()

    # Alerts meanwhile go to bob's login address, not the unconfirmed one.
    channel = channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone")
    from notifications.services import channel_send_test

    with django_capture_on_commit_callbacks(execute=True):
        channel_send_test(channel=channel)
    _send_queued_tests()
    assert len(smtp.to("someone-else@example.net")) == 1
    assert len(smtp.to("bob@example.org")) == 1

    link = _link(smtp, "someone-else@example.net")
    assert Client().post(link).status_code == 200
    assert User.objects.get(pk=people.bob.pk).notification_address() == "someone-else@example.net"


def test_ones_own_verified_address_needs_no_confirmation(people: People, bob_client: Client, smtp) -> None:  # type: ignore[no-untyped-def]
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(user=people.bob, email="bob.work@example.org", verified=True, primary=False)
    bob_client.post("/account/preferences/", {"timezone": "UTC", "notification_email": "bob.work@example.org"})
    assert User.objects.get(pk=people.bob.pk).notification_address() == "bob.work@example.org"
    assert smtp.messages == []


def test_a_stale_or_forged_link_confirms_nothing(
    people: People, bob_client: Client, smtp, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        bob_client.post("/account/preferences/", {"timezone": "UTC", "notification_email": "first@example.net"})
    link = _link(smtp, "first@example.net")
    bob_client.post("/account/preferences/", {"timezone": "UTC", "notification_email": "second@example.net"})
    assert Client().post(link).status_code == 404
    assert Client().post(link[:-3] + "xx/").status_code == 404
    assert User.objects.get(pk=people.bob.pk).notification_address() == "bob@example.org"
