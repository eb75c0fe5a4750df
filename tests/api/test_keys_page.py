"""The API keys page: list, create (secret shown once), revoke, audit log; tenancy."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from api.models import ApiKey, AuditAction, AuditEntry
from api.services import apikey_create
from keychest.accounts.models import Membership, Role

pytestmark = pytest.mark.django_db


def test_creating_a_key_shows_the_secret_once(alice_client, people) -> None:
    response = alice_client.post("/settings/api-keys/new/", {"name": "certbot", "scopes": ["read", "enrol"]})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    secret = re.search(rb"(kc_[A-Za-z0-9]{40})", response.content).group(1).decode()
    key = ApiKey.objects.get(name="certbot")
    assert key.team == people.team_a and key.scopes == ["enrol", "read"] and key.confirmed_at
    assert APIClient().get(f"/api/v1.0/user?api_key={secret}").status_code == 200
    assert secret.encode() not in alice_client.get("/settings/api-keys/").content
    assert AuditEntry.objects.filter(team=people.team_a, action=AuditAction.KEY_CREATED).exists()


def test_unknown_scopes_are_refused(alice_client) -> None:
    alice_client.post("/settings/api-keys/new/", {"name": "x", "scopes": ["root"]})
    assert not ApiKey.objects.exists()


def test_viewers_cannot_create_keys(bob_client, people) -> None:
    Membership.objects.filter(user=people.bob, team=people.team_a).update(role=Role.VIEWER)
    assert bob_client.post("/settings/api-keys/new/", {"name": "x", "scopes": ["read"]}).status_code == 403
    assert not ApiKey.objects.exists()


def test_a_member_cannot_revoke_someone_elses_key_but_an_owner_can(alice_client, bob_client, people) -> None:
    new = apikey_create(team=people.team_a, user=people.alice, scopes=["read"])
    bob_client.post(f"/settings/api-keys/{new.api_key.uuid}/revoke/")
    new.api_key.refresh_from_db()
    assert new.api_key.revoked_at is None
    alice_client.post(f"/settings/api-keys/{new.api_key.uuid}/revoke/")
    new.api_key.refresh_from_db()
    assert new.api_key.revoked_at is not None


def test_charlie_cannot_see_or_revoke_team_a_keys(charlie_client, people) -> None:
    new = apikey_create(team=people.team_a, user=people.alice, scopes=["read"], name="alice-secret-name")
    assert b"alice-secret-name" not in charlie_client.get("/settings/api-keys/").content
    assert charlie_client.post(f"/settings/api-keys/{new.api_key.uuid}/revoke/").status_code == 404
    new.api_key.refresh_from_db()
    assert new.api_key.revoked_at is None


def test_the_page_lists_keys_and_escapes_names(alice_client, people) -> None:
    apikey_create(team=people.team_a, user=people.alice, scopes=["read"], name="<script>x</script>")
    content = alice_client.get("/settings/api-keys/").content
    assert b"<script>x</script>" not in content and b"&lt;script&gt;" in content


def test_anonymous_visitors_are_sent_to_sign_in(client, people) -> None:
    assert client.get("/settings/api-keys/").status_code == 302


def test_the_page_shows_how_a_script_claims_a_key_without_the_readme(alice_client, people) -> None:
    html = alice_client.get("/settings/api-keys/").content.decode()
    assert "README" not in html
    assert "/api/v1.0/access/claim/alice%40example.org" in html and "/api/v1/docs/" in html
