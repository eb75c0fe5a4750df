"""/api/v1/issuance-policy: read by any member, replaced by admins, per team."""

from __future__ import annotations

import pytest

from monitors.models import IssuancePolicy
from tests.api.conftest import key_client

pytestmark = pytest.mark.django_db
URL = "/api/v1/issuance-policy/"
PIN = "ab" * 32


def test_the_policy_defaults_then_is_replaced_by_an_admin(people, alice_key, charlie_key) -> None:
    alice = key_client(alice_key)
    assert alice.get(URL).json() == {"allowed_issuers": [], "known_keys": [], "check_caa": True, "updated_at": None}
    body = {"allowed_issuers": ["LetsEncrypt.org", "Example Corp"], "known_keys": [PIN.upper()], "check_caa": False}
    response = alice.put(URL, body, format="json")
    assert response.status_code == 200
    assert response.json()["allowed_issuers"] == ["letsencrypt.org", "example corp"]
    assert response.json()["known_keys"] == [PIN]
    assert alice.get(URL).json()["check_caa"] is False
    # charlie's team has its own (default) policy and cannot see team A's.
    assert key_client(charlie_key).get(URL).json()["allowed_issuers"] == []
    assert IssuancePolicy.objects.filter(team=people.team_b).count() == 0


def test_bad_pins_and_oversized_lists_are_refused_with_a_clear_error(alice_key) -> None:
    alice = key_client(alice_key)
    response = alice.put(URL, {"known_keys": ["not-a-pin"]}, format="json")
    assert response.status_code == 400
    assert "64 hex digits" in response.content.decode()
    response = alice.put(URL, {"allowed_issuers": [f"ca{i}.example" for i in range(101)]}, format="json")
    assert response.status_code == 400
    assert IssuancePolicy.objects.count() == 0


def test_read_keys_and_viewers_cannot_change_it(people, alice_read_key, bob_client) -> None:
    assert key_client(alice_read_key).put(URL, {"allowed_issuers": ["x"]}, format="json").status_code == 403
    # bob is a member of team A (not an admin): he reads, he does not write.
    assert bob_client.get(URL).status_code == 200
    response = bob_client.put(URL, {"allowed_issuers": ["x"]}, content_type="application/json")
    assert response.status_code == 403
    assert IssuancePolicy.objects.count() == 0
