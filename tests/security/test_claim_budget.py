"""Security finding 6: one client cannot close the claim flow for everyone. The global hourly
cap counts only claims that passed the per-address and per-IP checks, and one IP has a claim
budget of its own (KEYCHEST_CLAIM_PER_IP_PER_HOUR)."""

from __future__ import annotations

import pytest
from django.test import TestCase
from rest_framework.test import APIClient

from tests.conftest import People

pytestmark = pytest.mark.django_db


def claim(email: str, key: str | None, ip: str):  # type: ignore[no-untyped-def]
    client = APIClient(REMOTE_ADDR=ip)
    with TestCase.captureOnCommitCallbacks(execute=True):
        if key is None:
            return client.get(f"/api/v1.0/access/claim/{email}")
        return client.post("/api/v1.0/access/claim", {"email": email, "api_key": key}, format="json")


def test_refused_claims_do_not_use_up_the_global_cap(smtp, people: People, settings) -> None:  # type: ignore[no-untyped-def]
    settings.KEYCHEST_CLAIM_GLOBAL_PER_HOUR = 5
    settings.KEYCHEST_CLAIM_EMAILS_PER_ADDRESS_PER_DAY = 2
    statuses = [claim("alice@example.org", None, "198.51.100.7").json()["status"] for _ in range(30)]
    assert statuses[:2] == ["created", "created"]
    assert set(statuses[2:]) == {"too-many"}
    # Someone else, elsewhere, still gets a key: only the two that passed were counted.
    response = claim("dave@example.net", "dave-key-0123456789abc", "203.0.113.9")
    assert response.status_code == 201, response.json()
    assert len(smtp.to("dave@example.net")) == 1


def test_one_ip_has_its_own_claim_budget(smtp, people: People, settings) -> None:  # type: ignore[no-untyped-def]
    settings.KEYCHEST_CLAIM_PER_IP_PER_HOUR = 3
    settings.KEYCHEST_CLAIM_GLOBAL_PER_HOUR = 5
    for who in ("alice", "bob", "charlie"):
        assert claim(f"{who}@example.org", None, "198.51.100.7").status_code == 201
    # Many existing addresses from one IP: no new accounts, one email each, still refused.
    refused = claim("alice@example.org", "another-key-0123456789", "198.51.100.7")
    assert refused.status_code == 429 and refused.json()["status"] == "too-many"
    assert claim("dave@example.net", None, "203.0.113.9").status_code == 201
    assert claim("erin@example.net", None, "203.0.113.10").status_code == 201


def test_the_global_cap_still_holds(smtp, people: People, settings) -> None:  # type: ignore[no-untyped-def]
    settings.KEYCHEST_CLAIM_GLOBAL_PER_HOUR = 2
    assert claim("a@example.net", None, "192.0.2.1").status_code == 201
    assert claim("b@example.net", None, "192.0.2.2").status_code == 201
    assert claim("c@example.net", None, "192.0.2.3").json()["status"] == "too-many"


def test_a_flood_of_claims_from_one_ip_writes_a_bounded_number_of_rows(smtp, people: People, settings) -> None:  # type: ignore[no-untyped-def]
    """Repeated claims (each stores an audit row for the key's team) count against the IP's
    budget too, so a flood with a known key cannot fill the audit table."""
    from api.models import AuditEntry

    settings.KEYCHEST_CLAIM_PER_IP_PER_HOUR = 3
    key = "flood-key-0123456789abc"
    assert claim("alice@example.org", key, "198.51.100.7").status_code == 201
    before = AuditEntry.objects.count()
    statuses = [claim("alice@example.org", key, "198.51.100.7").json()["status"] for _ in range(20)]
    assert statuses[:2] == ["success", "success"] and set(statuses[2:]) == {"too-many"}
    assert AuditEntry.objects.count() - before == 2  # the two repeats within the budget
