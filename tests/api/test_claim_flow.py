"""The no-set-up claim flow, driven through HTTP with a real SMTP server."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.test import Client, TestCase
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import ApiKey, AuditAction, AuditEntry, Claim, ClaimBlock, ClaimState
from api.services import claims_expire
from keychest.accounts.models import User
from lab.ctlog.certgen import issue
from tests.api.conftest import key_client

pytestmark = pytest.mark.django_db
KEY = "my-script-key-0123456789"


def claim(email: str, key: str | None = KEY, ip: str = "192.0.2.10"):
    client = APIClient(REMOTE_ADDR=ip)
    # Run what the view queued for after commit (the email), as a real commit would.
    with TestCase.captureOnCommitCallbacks(execute=True):
        if key is None:
            return client.get(f"/api/v1.0/access/claim/{email}")
        return client.post("/api/v1.0/access/claim", {"email": email, "api_key": key}, format="json")


def links_in(text: str) -> dict[str, str]:
    found = re.findall(r"http://[^\s]+/api/claim/[^\s/]+/(confirm|revoke|block)/", text)
    urls = re.findall(r"(http://[^\s]+/api/claim/[^\s/]+/(?:confirm|revoke|block)/)", text)
    return {action: url.split("127.0.0.1:8000", 1)[-1] for action, url in zip(found, urls, strict=True)}


def test_an_unknown_address_gets_a_dormant_account_and_a_confirm_or_block_email(smtp, people) -> None:
    response = claim("dave@example.net")
    assert response.status_code == 201
    assert response.json() == {"status": "created", "user": "dave@example.net", "api_key": KEY}
    [message] = smtp.to("dave@example.net")
    text = smtp.text(message)
    assert "Confirm your KeyChest account" in message["Subject"]
    assert "192.0.2.10" in text and "my-s…" in text
    assert set(links_in(text)) == {"confirm", "block"}
    dave = User.objects.get(email="dave@example.net")
    assert not dave.has_usable_password()
    assert ApiKey.objects.get(user=dave).confirmed_at is None


def test_a_known_address_gets_a_confirm_revoke_or_block_email_and_the_same_answer(smtp, people) -> None:
    unknown = claim("erin@example.net", key="erin-key-0123456789abc").json()
    known = claim("alice@example.org", key="alice-key-0123456789abc").json()
    assert unknown.keys() == known.keys()
    assert unknown["status"] == known["status"] == "created"
    [message] = smtp.to("alice@example.org")
    assert "new KeyChest API key" in message["Subject"]
    assert set(links_in(smtp.text(message))) == {"confirm", "revoke", "block"}
    key = ApiKey.objects.get(claim_email="alice@example.org")
    assert key.team == people.team_a and key.user == people.alice


def test_confirming_by_post_makes_the_key_work_and_get_never_confirms(smtp, people) -> None:
    claim("dave@example.net")
    links = links_in(smtp.text(smtp.to("dave@example.net")[0]))
    browser = Client()
    for _ in range(2):
        page = browser.get(links["confirm"])
        assert page.status_code == 200
        assert b"Confirm your account" in page.content
    key = ApiKey.objects.get(claim_email="dave@example.net")
    assert key.confirmed_at is None
    response = browser.post(
        links["confirm"], {"password1": "a long enough passphrase 42", "password2": "a long enough passphrase 42"}
    )
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.confirmed_at is not None
    assert Claim.objects.get(api_key=key).state == ClaimState.CONFIRMED
    dave = User.objects.get(email="dave@example.net")
    assert dave.check_password("a long enough passphrase 42")
    assert Client().login(email="dave@example.net", password="a long enough passphrase 42")
    body = key_client(KEY).get("/api/v1.0/user").json()
    assert body == {
        "status": "success",
        "user": "dave@example.net",
        "team": "dave's team",
        "confirmed": True,
        "scopes": ["enrol", "read"],
    }
    # The link is spent.
    assert browser.post(links["confirm"]).status_code == 404


def test_an_unconfirmed_key_authenticates_only_as_unconfirmed(smtp, people) -> None:
    claim("dave@example.net")
    body = key_client(KEY).get("/api/v1.0/user").json()
    assert body["confirmed"] is False


def test_repeating_a_claim_answers_success_and_sends_nothing_more(smtp, people) -> None:
    assert claim("dave@example.net").status_code == 201
    again = claim("dave@example.net")
    assert again.status_code == 200
    assert again.json() == {"status": "success", "user": "dave@example.net"}
    assert len(smtp.to("dave@example.net")) == 1


def test_reclaiming_a_key_with_another_address_is_refused_and_sends_nothing(smtp, people) -> None:
    assert claim("dave@example.net").status_code == 201
    response = claim("mallory@example.net")
    assert response.status_code == 403
    assert response.json()["status"] == "not-allowed"
    assert smtp.to("mallory@example.net") == []
    assert len(smtp.messages) == 1
    assert not User.objects.filter(email="mallory@example.net").exists()
    assert AuditEntry.objects.filter(action=AuditAction.CLAIM_REFUSED).exists()


def test_the_server_generates_a_key_when_the_script_gives_none(smtp, people) -> None:
    response = claim("dave@example.net", key=None)
    assert response.status_code == 201
    secret = response.json()["api_key"]
    assert re.fullmatch(r"kc_[A-Za-z0-9]{40}", secret)
    assert ApiKey.objects.get(claim_email="dave@example.net").display_prefix == secret[:11]
    assert key_client(secret).get("/api/v1.0/user").status_code == 200


@pytest.mark.parametrize(
    ("email", "key", "status"),
    [
        ("not-an-email", KEY, "invalid-email"),
        ("dave@example.net", "short", "invalid-api-key"),
        ("dave@example.net", "has spaces in it 0123456789", "invalid-api-key"),
        ("dave@example.net", "x" * 65, "invalid-api-key"),
    ],
)
def test_bad_claims_are_refused_without_email(smtp, people, email, key, status) -> None:
    response = claim(email, key=key)
    assert response.status_code == 400
    assert response.json()["status"] == status
    assert smtp.messages == []


def test_new_accounts_per_ip_are_limited_for_known_and_unknown_addresses_alike(smtp, people, settings) -> None:
    settings.KEYCHEST_CLAIM_ACCOUNTS_PER_IP_PER_DAY = 3
    for i in range(3):
        assert claim(f"user{i}@example.net", key=f"key-number-{i}-0123456789").status_code == 201
    unknown = claim("user9@example.net", key="key-number-9-0123456789")
    known = claim("alice@example.org", key="key-number-a-0123456789")
    assert unknown.status_code == known.status_code == 429
    assert unknown.json()["status"] == known.json()["status"] == "too-many"
    assert claim("user9@example.net", key="key-number-9-0123456789", ip="192.0.2.99").status_code == 201


def test_unconfirmed_keys_per_user_are_limited(smtp, people, settings) -> None:
    settings.KEYCHEST_CLAIM_UNCONFIRMED_KEYS_PER_USER = 2
    assert claim("alice@example.org", key="first-key-0123456789").status_code == 201
    assert claim("alice@example.org", key="second-key-0123456789").status_code == 201
    response = claim("alice@example.org", key="third-key-0123456789")
    assert response.status_code == 429 and response.json()["status"] == "too-many"
    assert len(smtp.to("alice@example.org")) == 2


def test_claim_emails_per_address_are_limited(smtp, people, settings) -> None:
    settings.KEYCHEST_CLAIM_EMAILS_PER_ADDRESS_PER_DAY = 1
    assert claim("alice@example.org", key="first-key-0123456789").status_code == 201
    assert claim("alice@example.org", key="second-key-0123456789", ip="192.0.2.77").json()["status"] == "too-many"
    assert len(smtp.to("alice@example.org")) == 1


def test_the_global_cap_stops_every_claim(smtp, people, settings) -> None:
    settings.KEYCHEST_CLAIM_GLOBAL_PER_HOUR = 2
    assert claim("a@example.net", key="key-a-0123456789abcd", ip="192.0.2.1").status_code == 201
    assert claim("b@example.net", key="key-b-0123456789abcd", ip="192.0.2.2").status_code == 201
    assert claim("c@example.net", key="key-c-0123456789abcd", ip="192.0.2.3").json()["status"] == "too-many"


def test_revoking_by_post_kills_the_key(smtp, people) -> None:
    claim("alice@example.org")
    links = links_in(smtp.text(smtp.to("alice@example.org")[0]))
    browser = Client()
    assert browser.get(links["revoke"]).status_code == 200
    assert key_client(KEY).get("/api/v1.0/user").status_code == 200
    assert browser.post(links["revoke"]).status_code == 200
    response = key_client(KEY).get("/api/v1.0/user")
    assert response.status_code == 401
    assert response.json()["status"] == "not-registered"


def test_blocking_refuses_later_claims_until_the_user_allows_them_again(smtp, people, alice_client) -> None:
    claim("alice@example.org")
    links = links_in(smtp.text(smtp.to("alice@example.org")[0]))
    assert Client().post(links["block"]).status_code == 200
    assert ClaimBlock.objects.filter(email="alice@example.org").exists()
    assert key_client(KEY).get("/api/v1.0/user").status_code == 401
    refused = claim("alice@example.org", key="another-key-0123456789")
    assert refused.status_code == 403 and refused.json()["status"] == "not-allowed"
    assert len(smtp.to("alice@example.org")) == 1
    alice_client.post("/settings/api-keys/unblock/")
    assert claim("alice@example.org", key="another-key-0123456789").status_code == 201


def test_links_expire_and_unconfirmed_keys_and_dormant_accounts_go_after_seven_days(smtp, people) -> None:
    claim("dave@example.net")
    links = links_in(smtp.text(smtp.to("dave@example.net")[0]))
    with time_machine.travel(timezone.now() + timedelta(days=7, minutes=1), tick=False):
        assert Client().get(links["confirm"]).status_code == 404
        assert Client().post(links["confirm"]).status_code == 404
        assert key_client(KEY).get("/api/v1.0/user").status_code == 401
        assert claims_expire() == 1
    assert not User.objects.filter(email="dave@example.net").exists()
    assert ApiKey.objects.filter(claim_email="dave@example.net").count() == 0


def test_every_step_is_audited_and_shown_to_the_user(smtp, people, alice_client) -> None:
    claim("alice@example.org")
    links = links_in(smtp.text(smtp.to("alice@example.org")[0]))
    Client().post(links["confirm"])
    actions = list(AuditEntry.objects.for_team(people.team_a).values_list("action", flat=True))
    assert {AuditAction.CLAIM_REQUESTED, AuditAction.CLAIM_EMAIL_SENT, AuditAction.CLAIM_CONFIRMED} <= set(actions)
    page = alice_client.get("/settings/api-keys/")
    assert b"A script claimed an API key" in page.content
    assert b"192.0.2.10" in page.content


def test_the_hourly_task_expires_old_claims(smtp, people) -> None:
    from api.tasks import claims_expire_task
    from keychest.celery import app

    assert app.conf.beat_schedule["api-claims-expire"]["task"] == "api.tasks.claims_expire"
    claim("alice@example.org")
    assert claims_expire_task() == 0
    with time_machine.travel(timezone.now() + timedelta(days=8), tick=False):
        assert claims_expire_task() == 1
    key = ApiKey.objects.get(claim_email="alice@example.org")
    assert key.revoked_at is not None
    assert User.objects.filter(email="alice@example.org").exists()


def test_what_an_unconfirmed_key_enrols_is_held_unscanned_until_confirmed(smtp, people, lab_issuer) -> None:
    from api.models import PendingEnrolment, UploadedCertificate
    from monitors.models import Server
    from tests.api.conftest import pem_of

    claim("dave@example.net")
    client = key_client(KEY)
    added = client.post("/api/v1.0/servers/add", {"domain": "web.example.net:8443"}, format="json").json()
    held_id = added.pop("id")
    assert added == {
        "status": "success",
        "key": "web.example.net:8443",
        "domain": "web.example.net",
        "port": 8443,
        "pending": True,
    }
    der = issue(lab_issuer, ["web.example.net"]).certificate
    assert (
        client.post("/api/v1.0/certificate/add", {"certificate": pem_of(der)}, format="json").json()["pending"] is True
    )
    # Held, not watched: the scheduler only ever sees Server rows, and there are none.
    assert Server.objects.count() == 0 and UploadedCertificate.objects.count() == 0
    status = client.get("/api/v1.0/servers/expiration/web.example.net:8443").json()
    assert status["pending"] is True and status["certificate_found"] is False
    # An unconfirmed key reads only what it enrolled, nothing else of the team.
    dave_team = ApiKey.objects.get(claim_email="dave@example.net").team
    Server.objects.create(team=dave_team, host="other.example.net", port=443)
    assert client.get("/api/v1.0/servers/expiration/other.example.net").status_code == 404
    Server.objects.filter(host="other.example.net").delete()
    # The confirmation page lists what was enrolled meanwhile.
    links = links_in(smtp.text(smtp.to("dave@example.net")[0]))
    page = Client().get(links["confirm"])
    assert b"web.example.net:8443" in page.content
    Client().post(links["confirm"])
    server = Server.objects.get(host="web.example.net", port=8443)
    assert str(server.uuid) == held_id  # the id the script stored is the server's
    assert server.team == dave_team and server.next_scan_at is not None and not server.paused
    assert UploadedCertificate.objects.filter(team=dave_team).count() == 1
    assert PendingEnrolment.objects.count() == 0
    assert client.get("/api/v1.0/servers/expiration/web.example.net:8443").json()["pending"] is False


def test_held_items_expire_with_their_key(smtp, people) -> None:
    from api.models import PendingEnrolment
    from monitors.models import Server

    claim("dave@example.net")
    key_client(KEY).post("/api/v1.0/servers/add", {"domain": "web.example.net"}, format="json")
    assert PendingEnrolment.objects.count() == 1
    with time_machine.travel(timezone.now() + timedelta(days=8), tick=False):
        claims_expire()
    assert PendingEnrolment.objects.count() == 0 and Server.objects.count() == 0


def test_a_claimed_server_is_scanned_only_once_the_address_confirms(smtp, people, lab, lab_dns, lab_settings) -> None:
    """End to end: claim, enrol, the scheduler sees nothing; confirm by POST, it scans for real."""
    from monitors.models import ScanResult, Server
    from monitors.scanning import scan_server_ids, servers_claim_due

    name = "claimed-web.keychest.test"
    lab_dns.set(name, ["127.0.0.1"])
    endpoint = lab.tls(lab.leaf([name]))
    claim("dave@example.net")
    client = key_client(KEY)
    assert client.post("/api/v1.0/servers/add", {"domain": f"{name}:{endpoint.port}"}, format="json").json()["pending"]
    assert servers_claim_due(limit=1000) == []  # nothing to scan: held items are not servers
    assert ScanResult.objects.count() == 0
    links = links_in(smtp.text(smtp.to("dave@example.net")[0]))
    Client().get(links["confirm"])
    assert servers_claim_due(limit=1000) == []  # GET never confirms
    Client().post(links["confirm"])
    server = Server.objects.get(host=name, port=endpoint.port)
    assert servers_claim_due(limit=1000) == [server.pk]
    scan_server_ids([server.pk])
    body = client.get(f"/api/v1.0/servers/expiration/{name}:{endpoint.port}").json()
    assert body["certificate_found"] is True and body["pending"] is False
    assert [r["ip"] for r in body["results"]] == ["127.0.0.1"]
    assert body["results"][0]["certificate_sha256"] == ScanResult.objects.get(server=server).leaf_sha256
