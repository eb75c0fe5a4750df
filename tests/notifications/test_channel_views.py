from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from notifications.models import Channel, ChannelKind, Delivery
from notifications.services import channel_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def channel(people) -> Channel:
    return channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="ops hook", url="https://hooks.example/x")


def test_owner_adds_a_webhook_channel(people, alice_client: Client) -> None:
    response = alice_client.post(
        reverse("channel_list"),
        {
            "kind": "webhook",
            "name": "pager",
            "url": "https://hooks.example/pager",
            "event_kinds": ["server_down", "certificate_expired"],
            "rate_limit_per_hour": 10,
            "grouping_seconds": 120,
        },
    )
    channel = Channel.objects.get(name="pager")
    assert response.status_code == 302 and response["Location"] == reverse("channel_detail", args=[channel.uuid])
    assert channel.team == people.team_a and channel.event_kinds == ["certificate_expired", "server_down"]
    page = alice_client.get(response["Location"]).content.decode()
    # The signing secret shows masked; an admin's POST shows it in full (security finding 8).
    assert channel.secret not in page and f"…{channel.secret[-4:]}" in page
    revealed = alice_client.post(response["Location"], {"reveal": "secret"})
    assert channel.secret in revealed.content.decode() and revealed["Cache-Control"] == "no-store"


def test_email_channel_to_chosen_members(people, alice_client: Client) -> None:
    alice_client.post(
        reverse("channel_list"),
        {
            "kind": "email",
            "name": "bob only",
            "email_members": [str(people.bob.uuid)],
            "rate_limit_per_hour": 20,
            "grouping_seconds": 60,
            "email_addresses": "noc@example.net",
        },
    )
    channel = Channel.objects.get(name="bob only")
    assert not channel.email_all_members
    assert list(channel.email_members.all()) == [people.bob]
    assert channel.extra_addresses() == ["noc@example.net"]


def test_members_see_channels_but_cannot_change_them(people, bob_client: Client, channel) -> None:
    assert bob_client.get(reverse("channel_list")).status_code == 200
    page = bob_client.get(reverse("channel_detail", args=[channel.uuid])).content.decode()
    assert "ops hook" in page and channel.secret not in page
    assert bob_client.post(reverse("channel_detail", args=[channel.uuid]), {"reveal": "secret"}).status_code == 403
    assert bob_client.post(reverse("channel_test", args=[channel.uuid])).status_code == 403
    assert bob_client.post(reverse("channel_delete", args=[channel.uuid])).status_code == 403
    bob_client.post(
        reverse("channel_list"),
        {"kind": "webhook", "url": "https://x.example/", "rate_limit_per_hour": 1, "grouping_seconds": 0},
    )
    assert Channel.objects.count() == 1


def test_charlie_gets_404_on_every_team_a_channel_page(people, charlie_client: Client, channel) -> None:
    assert channel.name not in charlie_client.get(reverse("channel_list")).content.decode()
    assert charlie_client.get(reverse("channel_detail", args=[channel.uuid])).status_code == 404
    for name in ("channel_test", "channel_enable", "channel_secret", "channel_delete"):
        assert charlie_client.post(reverse(name, args=[channel.uuid])).status_code == 404, name
    channel.refresh_from_db()
    assert channel.deleted_at is None and Delivery.objects.count() == 0


def test_send_test_queues_a_test_delivery(
    people, alice_client: Client, channel, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        response = alice_client.post(reverse("channel_test", args=[channel.uuid]))
    assert response.status_code == 302
    assert Delivery.objects.get().is_test


def test_rotating_the_secret_and_deleting(people, alice_client: Client, channel) -> None:
    old = channel.secret
    alice_client.post(reverse("channel_secret", args=[channel.uuid]))
    channel.refresh_from_db()
    assert channel.secret != old and len(channel.secret) == 64
    alice_client.post(reverse("channel_delete", args=[channel.uuid]))
    assert alice_client.get(reverse("channel_detail", args=[channel.uuid])).status_code == 404


def test_non_http_webhook_urls_are_refused(people, alice_client: Client) -> None:
    response = alice_client.post(
        reverse("channel_list"),
        {
            "kind": "webhook",
            "name": "x",
            "url": "ftp://files.example/",
            "rate_limit_per_hour": 1,
            "grouping_seconds": 0,
        },
    )
    assert response.status_code == 200 and not Channel.objects.exists()
