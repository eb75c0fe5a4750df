"""Security finding 8: webhook, Slack and Apprise URLs are credentials. Only admins see them, and
masked, in the API and on the channel pages; members and viewers see neither."""

from __future__ import annotations

import pytest
from django.test import Client

from api.models import Scope
from api.services import apikey_create
from keychest.accounts.models import Membership, Role
from notifications.models import ChannelKind
from notifications.services import channel_create
from tests.api.conftest import key_client
from tests.conftest import People

pytestmark = pytest.mark.django_db

HOOK_TOKEN = "XyZ9secretTOKENvalue1234"
SLACK_URL = f"https://hooks.slack.com/services/T00000000/B00000000/{HOOK_TOKEN}"
WEBHOOK_URL = f"https://hooks.example.com/incoming/{HOOK_TOKEN}?sig=abc"
APPRISE_URL = "tgram://123456789:ABCdefGHIjklMNOpqrSTUvwxYZ0123456/987654321"


@pytest.fixture
def channels(people: People):  # type: ignore[no-untyped-def]
    return [
        channel_create(team=people.team_a, kind=ChannelKind.SLACK, name="slack", url=SLACK_URL),
        channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="hook", url=WEBHOOK_URL),
        channel_create(team=people.team_a, kind=ChannelKind.APPRISE, name="tg", apprise_url=APPRISE_URL),
    ]


@pytest.fixture
def viewer(people: People) -> People:
    Membership.objects.filter(team=people.team_a, user=people.bob).update(role=Role.VIEWER)
    return people


def _leaks(body: bytes) -> list[str]:
    text = body.decode()
    return [s for s in (HOOK_TOKEN, "ABCdefGHIjklMNOpqrSTUvwxYZ0123456", "sig=abc") if s in text]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MEMBER])
def test_members_and_viewers_see_no_url_in_the_api(people: People, channels, client_for, role: str) -> None:  # type: ignore[no-untyped-def]
    Membership.objects.filter(team=people.team_a, user=people.bob).update(role=role)
    client = client_for(people.bob, people.team_a)
    listing = client.get("/api/v1/channels/")
    assert listing.status_code == 200 and not _leaks(listing.content)
    for row in listing.json()["results"]:
        assert row["url"] == "" and row["apprise_url"] == ""
        detail = client.get(f"/api/v1/channels/{row['id']}/")
        assert detail.status_code == 200 and not _leaks(detail.content)


def test_a_read_key_sees_no_url(people: People, channels) -> None:  # type: ignore[no-untyped-def]
    secret = apikey_create(team=people.team_a, user=people.alice, scopes=[Scope.READ]).secret
    assert not _leaks(key_client(secret).get("/api/v1/channels/").content)


def test_admins_see_the_urls_masked(people: People, channels, alice_client: Client) -> None:  # type: ignore[no-untyped-def]
    body = alice_client.get("/api/v1/channels/")
    assert not _leaks(body.content)
    by_name = {row["name"]: row for row in body.json()["results"]}
    assert by_name["slack"]["url"].startswith("https://hooks.slack.com/") and "…" in by_name["slack"]["url"]
    assert by_name["hook"]["url"].startswith("https://hooks.example.com/") and "…" in by_name["hook"]["url"]
    assert by_name["tg"]["apprise_url"].startswith("tgram://")


def test_creating_answers_masked_too(people: People, alice_client: Client) -> None:
    response = alice_client.post(
        "/api/v1/channels/", {"kind": "slack", "name": "s", "url": SLACK_URL}, content_type="application/json"
    )
    assert response.status_code == 201 and not _leaks(response.content)


def test_the_channel_pages_hide_urls_from_viewers_and_mask_them_for_admins(
    viewer: People, channels, client_for, alice_client: Client
) -> None:  # type: ignore[no-untyped-def]
    bob = client_for(viewer.bob, viewer.team_a)
    for client in (bob, alice_client):
        assert not _leaks(client.get("/notifications/channels/").content)
        for channel in channels:
            page = client.get(f"/notifications/channels/{channel.uuid}/")
            assert page.status_code == 200 and not _leaks(page.content)
    slack_page = alice_client.get(f"/notifications/channels/{channels[0].uuid}/").content.decode()
    assert "https://hooks.slack.com/…" in slack_page
    assert "hooks.slack.com" not in bob.get(f"/notifications/channels/{channels[0].uuid}/").content.decode()


def test_the_signing_secret_shows_masked_and_in_full_only_on_an_admins_request(
    viewer: People, channels, client_for, alice_client: Client
) -> None:  # type: ignore[no-untyped-def]
    hook = channels[1]
    url = f"/notifications/channels/{hook.uuid}/"
    assert hook.secret not in alice_client.get(url).content.decode()
    revealed = alice_client.post(url, {"reveal": "secret"})
    assert hook.secret in revealed.content.decode() and revealed["Cache-Control"] == "no-store"
    bob = client_for(viewer.bob, viewer.team_a)
    assert bob.post(url, {"reveal": "secret"}).status_code == 403
    assert hook.secret not in bob.get(url).content.decode()
