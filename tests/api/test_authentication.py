"""Keys as Bearer tokens, `api_key` in the query or body, or the Basic-auth password."""

from __future__ import annotations

import base64

import pytest
from rest_framework.test import APIClient

from api.models import ApiKey
from api.services import apikey_revoke
from keychest.accounts.models import Membership

pytestmark = pytest.mark.django_db


def test_ping_needs_no_key(people) -> None:
    body = APIClient().get("/api/v1.0/ping").json()
    assert body["status"] == "success" and body["authenticated"] is False


def test_a_bearer_token_authenticates(alice_key) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert client.get("/api/v1.0/user").json()["user"] == "alice@example.org"


def test_the_key_in_the_query_authenticates(alice_key) -> None:
    assert APIClient().get(f"/api/v1.0/user?api_key={alice_key}").json()["user"] == "alice@example.org"


@pytest.mark.parametrize("fmt", ["json", "multipart"])
def test_the_key_in_a_json_or_form_body_is_found(fmt) -> None:
    from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from api.access import key_from_request

    django_request = APIRequestFactory().post(
        "/api/v1.0/servers/add", {"api_key": "secret-key-0123456789", "domain": "a.test"}, format=fmt
    )
    request = Request(django_request, parsers=[JSONParser(), FormParser(), MultiPartParser()])
    found = key_from_request(request)
    assert found == "secret-key-0123456789"


def test_the_basic_auth_password_authenticates(alice_key) -> None:
    client = APIClient()
    token = base64.b64encode(f"alice@example.org:{alice_key}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    assert client.get("/api/v1.0/user").json()["user"] == "alice@example.org"


def test_no_key_is_not_registered(people) -> None:
    response = APIClient().get("/api/v1.0/user")
    assert response.status_code == 401
    assert response.json()["status"] == "not-registered"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_unknown_key_is_not_registered(people) -> None:
    response = APIClient().get("/api/v1.0/user?api_key=kc_nonexistent0000000000000000000000000000")
    assert response.status_code == 401
    assert response.json()["status"] == "not-registered"


def test_a_revoked_key_stops_working_at_once(people, alice_key) -> None:
    assert APIClient().get(f"/api/v1.0/user?api_key={alice_key}").status_code == 200
    apikey_revoke(api_key=ApiKey.objects.get(user=people.alice), by=people.alice)
    assert APIClient().get(f"/api/v1.0/user?api_key={alice_key}").status_code == 401


def test_a_key_stops_working_when_its_user_leaves_the_team(people) -> None:
    from api.services import apikey_create

    secret = apikey_create(team=people.team_a, user=people.bob, scopes=["read"]).secret
    assert APIClient().get(f"/api/v1.0/user?api_key={secret}").status_code == 200
    Membership.objects.filter(team=people.team_a, user=people.bob).delete()
    assert APIClient().get(f"/api/v1.0/user?api_key={secret}").status_code == 401


def test_last_use_is_recorded(people, alice_key) -> None:
    APIClient(REMOTE_ADDR="192.0.2.44").get(f"/api/v1.0/user?api_key={alice_key}")
    key = ApiKey.objects.get(user=people.alice)
    assert key.last_used_at is not None and key.last_used_ip == "192.0.2.44"


def test_keys_are_stored_hashed(people, alice_key) -> None:
    key = ApiKey.objects.get(user=people.alice)
    assert alice_key not in (key.key_hash, key.display_prefix)
    assert key.display_prefix == alice_key[:11] and alice_key.startswith("kc_") and len(alice_key) == 43


def test_requests_are_throttled_per_key(people, alice_key, settings) -> None:
    settings.KEYCHEST_API_RATE_PER_KEY = 3
    statuses = [APIClient().get(f"/api/v1.0/user?api_key={alice_key}").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = APIClient().get(f"/api/v1.0/user?api_key={alice_key}")
    assert response.json()["status"] == "too-many" and int(response["Retry-After"]) > 0


def test_requests_are_throttled_per_address(people, settings) -> None:
    settings.KEYCHEST_API_RATE_PER_IP = 2
    client = APIClient(REMOTE_ADDR="192.0.2.5")
    assert [client.get("/api/v1.0/ping").status_code for _ in range(3)] == [200, 200, 429]
    assert APIClient(REMOTE_ADDR="192.0.2.6").get("/api/v1.0/ping").status_code == 200
