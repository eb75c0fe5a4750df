"""Every team starts with an "email every member" channel, and teams from before that get one
from a data migration (issue 14 item 2)."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.test import Client
from django.utils import timezone

from events.services import event_record
from keychest.accounts.models import Team
from keychest.accounts.services import team_create
from notifications.models import Channel, ChannelKind, DigestMode, EventKind, NotificationPreferences
from notifications.services import (
    DEFAULT_CHANNEL_NAME,
    channel_default_create,
    channel_delete,
    deliveries_send_due,
    events_dispatch,
)
from tests.conftest import make_user

pytestmark = pytest.mark.django_db
migration = importlib.import_module("notifications.migrations.0007_default_email_channel")


def test_a_new_team_emails_every_member_from_the_start(smtp) -> None:
    dana = make_user("dana@example.org")
    [channel] = Channel.objects.filter(team__memberships__user=dana)
    assert (channel.name, channel.kind, channel.email_all_members, channel.enabled) == (
        DEFAULT_CHANNEL_NAME,
        ChannelKind.EMAIL,
        True,
        True,
    )
    event_record(team=channel.team, kind=EventKind.SERVER_DOWN, subject="www.example.com", dedup_key="down")
    events_dispatch()
    deliveries_send_due(now=timezone.now() + timedelta(minutes=5))
    [message] = smtp.messages
    assert str(message["To"]) == "dana@example.org" and "www.example.com" in smtp.text(message)


def test_a_team_created_on_the_teams_page_gets_its_own_channel() -> None:
    erin = make_user("erin@example.org")
    team = team_create(name="Operations", owner=erin)
    assert list(Channel.objects.filter(team=team).values_list("name", flat=True)) == [DEFAULT_CHANNEL_NAME]


def test_the_migration_adds_a_channel_only_to_teams_that_never_had_one() -> None:
    owner = make_user("frank@example.org")
    bare = team_create(name="Bare", owner=owner)
    chose_webhook = team_create(name="Webhook only", owner=owner)
    deleted_all = team_create(name="Deleted all", owner=owner)
    Channel.objects.filter(team__in=[bare, chose_webhook]).delete()  # as before this change
    Channel.objects.create(team=chose_webhook, kind=ChannelKind.WEBHOOK, name="hook", url="https://h.example.net/")
    channel_delete(channel=Channel.objects.get(team=deleted_all))
    before = Channel.objects.count()
    migration.add_default_channels(apps, None)
    assert Channel.objects.count() == before + 1
    [added] = Channel.objects.filter(team=bare)
    assert (added.name, added.kind, added.email_all_members) == (DEFAULT_CHANNEL_NAME, ChannelKind.EMAIL, True)
    assert list(Channel.objects.filter(team=chose_webhook).values_list("kind", flat=True)) == [ChannelKind.WEBHOOK]
    assert Channel.objects.filter(team=deleted_all, deleted_at=None).count() == 0  # their choice stands
    migration.add_default_channels(apps, None)  # twice is harmless
    assert Channel.objects.count() == before + 1
    assert Team.objects.count() == 4  # frank's personal team too: it kept its default channel


def test_the_preferences_page_says_which_teams_alerts_reach_you(people, alice_client: Client) -> None:
    channel_default_create(team=people.team_a)  # this directory's `people` comes without it
    page = alice_client.get("/account/notifications/").content.decode()
    reach = page.split('data-testid="alert-reach"')[1].split("</div>")[0]
    assert "Team A</strong> reach you through “Email every member”" in reach
    Channel.objects.filter(team=people.team_a).delete()
    NotificationPreferences.objects.filter(user=people.alice).update(digest_mode=DigestMode.OFF)
    page = alice_client.get("/account/notifications/").content.decode()
    reach = page.split('data-testid="alert-reach"')[1].split("</div>")[0]
    assert "Team A</strong> has no email channel that reaches you" in reach
    assert "You switched alert emails off" in reach
