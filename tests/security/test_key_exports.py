"""Security finding 3: a key acts for one team; the per-user calendar address (every team of the
key's user) is refused to keys, and each export a key reaches holds only the key's team."""

from __future__ import annotations

import pytest
from django.test import Client

from api.models import Scope
from api.services import apikey_create
from tests.api.conftest import key_client, make_world
from tests.conftest import People

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_read_key(people: People) -> str:
    """bob's read key for team A; bob's personal team holds a server of its own."""
    return apikey_create(team=people.team_a, user=people.bob, name="bob", scopes=[Scope.READ]).secret


@pytest.fixture
def bob_personal(people: People, lab_issuer):  # type: ignore[no-untyped-def]
    from keychest.accounts.services import personal_team_ensure

    make_world(people.team_a, people.alice, lab_issuer, domain="team-a.example")
    return make_world(personal_team_ensure(user=people.bob), people.bob, lab_issuer, domain="bob-private.example")


def test_a_key_cannot_get_the_per_user_calendar_address(bob_read_key: str, bob_personal) -> None:  # type: ignore[no-untyped-def]
    response = key_client(bob_read_key).get("/api/v1/exports/calendar-url")
    assert response.status_code == 403
    assert response.json()["error"] == "session-only"
    assert "calendar.ics" in response.json()["detail"]


def test_the_session_still_gets_it(people: People, client_for, bob_personal) -> None:  # type: ignore[no-untyped-def]
    url = client_for(people.bob, people.team_a).get("/api/v1/exports/calendar-url").json()["url"]
    feed = Client().get(url.split("127.0.0.1:8000", 1)[1]).content
    assert b"www.bob-private.example" in feed and b"www.team-a.example" in feed


@pytest.mark.parametrize(
    "path", ["/api/v1/exports/calendar.ics", "/api/v1/exports/servers.csv", "/api/v1/exports/certificates.csv"]
)
def test_every_export_a_key_reaches_holds_only_the_keys_team(bob_read_key: str, bob_personal, path: str) -> None:  # type: ignore[no-untyped-def]
    response = key_client(bob_read_key).get(path)
    assert response.status_code == 200
    assert b"team-a.example" in response.content
    assert b"bob-private.example" not in response.content
