"""Security finding 7: KeyChest is no spam relay. Test sends count against the channel's rate
limit, and invitation emails to one address are limited (every team together)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from keychest.accounts.models import Team
from keychest.accounts.services import team_create
from notifications.models import ChannelKind, Delivery
from notifications.services import channel_create, delivery_send
from tests.conftest import People

pytestmark = pytest.mark.django_db


def _worker_sends_everything() -> None:
    """What the Celery worker does with the queued test deliveries."""
    for delivery in Delivery.objects.filter(is_test=True, sent_at=None):
        delivery_send(delivery_id=delivery.pk, now=timezone.now())


def test_test_sends_count_against_the_channel_rate_limit(people: People, alice_client: Client, smtp) -> None:  # type: ignore[no-untyped-def]
    channel = channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone", rate_limit_per_hour=2)
    answers = [alice_client.post(f"/api/v1/channels/{channel.uuid}/test/").status_code for _ in range(5)]
    assert answers == [202, 202, 429, 429, 429]
    refused = alice_client.post(f"/api/v1/channels/{channel.uuid}/test/")
    assert refused.json()["error"] == "throttled" and int(refused["Retry-After"]) > 0
    _worker_sends_everything()
    # Two messages to the two members, not five.
    assert len(smtp.messages) == 4


def test_the_channel_page_test_button_meets_the_same_limit(people: People, alice_client: Client, smtp) -> None:  # type: ignore[no-untyped-def]
    channel = channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone", rate_limit_per_hour=1)
    url = reverse("channel_test", args=[channel.uuid])
    alice_client.post(url)
    page = alice_client.post(url, follow=True).content.decode()
    assert "Not sent" in page and "rate limit" in page
    assert Delivery.objects.filter(channel=channel, is_test=True).count() == 1


def test_test_sends_use_up_the_budget_of_real_alerts_too(people: People, smtp) -> None:  # type: ignore[no-untyped-def]
    from notifications.services import ChannelRateLimited, channel_send_test

    channel = channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone", rate_limit_per_hour=1)
    channel_send_test(channel=channel)
    with pytest.raises(ChannelRateLimited):
        channel_send_test(channel=channel)


def test_invitations_to_one_address_are_limited_across_teams(
    people: People, alice_client: Client, django_capture_on_commit_callbacks, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.KEYCHEST_INVITATIONS_PER_ADDRESS_PER_DAY = 3
    teams: list[Team] = [people.team_a] + [team_create(name=f"T{i}", owner=people.alice) for i in range(4)]
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(4):
            alice_client.post(
                reverse("team_invite", args=[people.team_a.uuid]), {"email": "eve@example.net", "role": "member"}
            )
        for team in teams[1:]:
            alice_client.post(reverse("team_invite", args=[team.uuid]), {"email": "eve@example.net", "role": "member"})
    from django.core import mail

    assert len([m for m in mail.outbox if m.to == ["eve@example.net"]]) == 3


def test_invitations_through_the_api_are_limited_too(
    people: People, alice_client: Client, django_capture_on_commit_callbacks, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.KEYCHEST_INVITATIONS_PER_ADDRESS_PER_DAY = 2
    with django_capture_on_commit_callbacks(execute=True):
        answers = [
            alice_client.post(
                "/api/v1/members/invite/",
                {"email": "eve@example.net", "role": "member"},
                content_type="application/json",
            ).status_code
            for _ in range(20)
        ]
    assert answers[:2] == [201, 201] and set(answers[2:]) == {400}
    from django.core import mail

    assert len(mail.outbox) == 2
