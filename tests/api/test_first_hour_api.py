"""A script's first hour with the API (issue 14 items 3 and 14): ids from the start, no 301 on
PATCH/DELETE without a trailing slash, private targets refused with words."""

from __future__ import annotations

import pytest
from django.test import Client as DjangoClient

from api.models import ApiKey
from monitors.models import Server
from tests.api.conftest import key_client
from tests.api.test_claim_flow import claim, links_in

pytestmark = pytest.mark.django_db
KEY = "my-script-key-0123456789"


def test_an_unconfirmed_key_gets_an_id_and_key_and_the_id_stays_the_servers(people, smtp) -> None:
    claim("erin@example.net", KEY)
    added = key_client(KEY).post("/api/v1.0/servers/add", {"domain": "web.example.net:8443"}, format="json").json()
    assert added["status"] == "success" and added["pending"] is True
    assert added["id"] and added["key"] == "web.example.net:8443"
    again = key_client(KEY).post("/api/v1.0/servers/add", {"domain": "web.example.net:8443"}, format="json").json()
    assert (again["status"], again["id"], again["key"]) == ("already-inserted", added["id"], added["key"])
    # The owner confirms by the emailed link: the server appears with the id the script stored.
    DjangoClient().post(links_in(smtp.text(smtp.to("erin@example.net")[0]))["confirm"])
    assert ApiKey.objects.get(claim_email="erin@example.net").is_confirmed()
    server = Server.objects.get(host="web.example.net", port=8443)
    assert str(server.uuid) == added["id"]
    confirmed = key_client(KEY).post("/api/v1.0/servers/add", {"domain": "web.example.net:8443"}, format="json")
    assert confirmed.json()["id"] == added["id"] and confirmed.json()["key"] == "web.example.net:8443"


def test_a_confirmed_key_gets_id_and_key(people, alice_key) -> None:
    body = key_client(alice_key).post("/api/v1.0/servers/add", {"domain": "shop.example.com"}, format="json").json()
    assert body["key"] == "shop.example.com:443"
    assert Server.objects.get(uuid=body["id"]).host == "shop.example.com"


@pytest.mark.parametrize("typed", ["127.0.0.1", "localhost:8443", "10.0.0.5"])
def test_private_targets_are_refused_by_both_apis_with_words(people, alice_key, settings, typed) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    client = key_client(alice_key)
    old = client.post("/api/v1.0/servers/add", {"domain": typed}, format="json")
    assert old.status_code == 400 and old.json()["status"] == "invalid-domain"
    assert "cannot reach it from the internet" in old.json()["detail"]
    new = client.post("/api/v1/servers/", {"host": typed}, format="json")
    assert new.status_code == 400 and "public name or address instead" in new.json()["fields"]["host"][0]
    assert not Server.objects.exists()


def test_patch_and_delete_without_the_trailing_slash_are_not_redirected(people, alice_key, charlie_key) -> None:
    client = key_client(alice_key)
    server_id = client.post("/api/v1/servers/", {"host": "www.example.com"}, format="json").json()["id"]
    patched = client.patch(f"/api/v1/servers/{server_id}", {"tags": ["prod"]}, format="json")
    assert patched.status_code == 200 and patched.json()["tags"] == ["prod"]
    assert client.get(f"/api/v1/servers/{server_id}").json()["tags"] == ["prod"]
    # Another team's server is still a 404 without the slash.
    assert key_client(charlie_key).delete(f"/api/v1/servers/{server_id}").status_code == 404
    assert client.delete(f"/api/v1/servers/{server_id}").status_code == 204
    assert Server.objects.get(uuid=server_id).removed_at is not None
    assert client.get("/api/v1/no-such-thing").status_code == 404
