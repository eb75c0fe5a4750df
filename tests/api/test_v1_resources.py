"""/api/v1: certificates, domains, findings, events, channels, keys, audit, members, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.models import ApiKey
from keychest.accounts.models import Invitation, Membership, Role
from lab.ctlog.certgen import issue
from notifications.models import Channel
from tests.api.conftest import key_client, pem_of

pytestmark = pytest.mark.django_db


def test_certificates_the_team_sees(alice_client, world) -> None:
    shas = {c["sha256"]: c for c in alice_client.get("/api/v1/certificates/").json()["results"]}
    assert world.certificate_sha256 in shas and world.uploaded_sha256 in shas
    # Both name something under the watched example.com, but neither was read from a CT log:
    # "ct" only for what was (issue 14 item 5).
    assert shas[world.certificate_sha256]["seen_by"] == ["scan"]
    assert shas[world.uploaded_sha256]["seen_by"] == ["upload"]
    only_uploads = alice_client.get("/api/v1/certificates/?source=upload").json()["results"]
    assert [c["sha256"] for c in only_uploads] == [world.uploaded_sha256]
    by_domain = alice_client.get("/api/v1/certificates/?domain=upload.example.com").json()["results"]
    assert [c["sha256"] for c in by_domain] == [world.uploaded_sha256]
    assert alice_client.get("/api/v1/certificates/?issuer=nobody-issues-this").json()["results"] == []
    assert alice_client.get("/api/v1/certificates/?expiring_within_days=400").json()["results"]
    assert alice_client.get("/api/v1/certificates/?expires_before=2000-01-01T00:00:00Z").json()["results"] == []
    assert alice_client.get("/api/v1/certificates/?expires_before=yesterday").status_code == 400


def test_certificate_detail_has_names_pem_and_chain(alice_client, world) -> None:
    body = alice_client.get(f"/api/v1/certificates/{world.certificate_sha256}/").json()
    assert body["names"] == ["www.example.com"]
    assert body["pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert [c["subject"] for c in body["chain"]] and body["chain"][0]["pem"].startswith("-----BEGIN")
    assert "server:www.example.com:443" in body["sources"]


def test_ct_certificates_under_a_watched_domain_are_visible(alice_client, world, lab_issuer) -> None:
    from certificates.services import certificate_store_der

    ct = certificate_store_der(der=issue(lab_issuer, ["shop.example.com"]).certificate, source="ct", source_ref="log:1")
    listed = [c["sha256"] for c in alice_client.get("/api/v1/certificates/?source=ct").json()["results"]]
    assert ct.sha256 in listed
    history = alice_client.get(f"/api/v1/domains/{world.domain.uuid}/certificates/").json()
    assert ct.sha256 in [c["sha256"] for c in history]


def test_certificate_upload(alice_client, people, lab_issuer) -> None:
    pem = pem_of(issue(lab_issuer, ["new.example.com"]).certificate)
    first = alice_client.post("/api/v1/certificates/", {"certificate": pem}, content_type="application/json")
    assert first.status_code == 201
    assert (
        alice_client.post("/api/v1/certificates/", {"certificate": pem}, content_type="application/json").status_code
        == 200
    )
    two = pem + pem_of(lab_issuer.der)
    refused = alice_client.post("/api/v1/certificates/", {"certificate": two}, content_type="application/json")
    assert refused.status_code == 400 and "single-cert-expected" in str(refused.json()["fields"])


def test_charlie_cannot_see_team_a_certificates(charlie_client, world) -> None:
    assert charlie_client.get(f"/api/v1/certificates/{world.certificate_sha256}/").status_code == 404
    assert charlie_client.get("/api/v1/certificates/").json()["results"] == []


def test_domains_and_discovered_hosts(alice_client, world) -> None:
    [domain] = alice_client.get("/api/v1/domains/").json()["results"]
    assert domain["domain"] == "example.com"
    [host] = alice_client.get(f"/api/v1/domains/{world.domain.uuid}/hosts/").json()
    assert host["name"] == "api.example.com"


def test_watching_changing_and_unwatching_a_domain(alice_client, people, lab_issuer) -> None:
    from certificates.services import certificate_store_der
    from monitors.models import WatchedDomain

    certificate_store_der(der=issue(lab_issuer, ["mail.example.org"]).certificate, source="ct", source_ref="log:7")
    created = alice_client.post("/api/v1/domains/", {"domain": "Example.ORG"}, content_type="application/json")
    assert created.status_code == 201
    body = created.json()
    assert body["domain"] == "example.org" and body["include_subdomains"] is True
    # Known sub-domains are discovered from the certificate store at once.
    assert [h["name"] for h in alice_client.get(f"/api/v1/domains/{body['id']}/hosts/").json()] == ["mail.example.org"]
    patched = alice_client.patch(
        f"/api/v1/domains/{body['id']}/", {"auto_watch": True}, content_type="application/json"
    )
    assert patched.json()["auto_watch"] is True and patched.json()["include_subdomains"] is True
    assert (
        alice_client.post("/api/v1/domains/", {"domain": "*.example.org"}, content_type="application/json").status_code
        == 400
    )
    assert alice_client.delete(f"/api/v1/domains/{body['id']}/").status_code == 204
    assert WatchedDomain.objects.get(uuid=body["id"]).removed_at is not None
    assert alice_client.get(f"/api/v1/domains/{body['id']}/").status_code == 404


@pytest.mark.parametrize("suffix", ["com", "co.uk", "github.io"])
def test_a_public_suffix_cannot_be_watched_through_the_api(alice_client, people, suffix) -> None:
    from monitors.models import WatchedDomain

    refused = alice_client.post("/api/v1/domains/", {"domain": suffix}, content_type="application/json")
    assert refused.status_code == 400
    assert "is a public suffix" in str(refused.json()["fields"]["domain"])
    assert not WatchedDomain.objects.filter(team=people.team_a).exists()


def test_findings_by_state_and_code(alice_client, world) -> None:
    assert len(alice_client.get("/api/v1/findings/").json()["results"]) == 1
    assert alice_client.get("/api/v1/findings/?code=expired").json()["results"] == []
    assert alice_client.get("/api/v1/findings/?state=resolved").json()["results"] == []
    world.finding.resolved_at = datetime.now(UTC)
    world.finding.save()
    assert len(alice_client.get("/api/v1/findings/?state=resolved").json()["results"]) == 1
    assert alice_client.get(f"/api/v1/findings/{world.finding.uuid}/").json()["code"] == "renewal_due"
    assert alice_client.get("/api/v1/findings/?state=bogus").status_code == 400


def test_events(alice_client, world) -> None:
    [event] = alice_client.get("/api/v1/events/?kind=certificate_expiring").json()["results"]
    assert event["subject"] == "www.example.com:443"
    since = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert alice_client.get(f"/api/v1/events/?since={since}").json()["results"] == []


def test_channels_create_test_disable_and_delete(alice_client, bob_client, world) -> None:
    created = alice_client.post(
        "/api/v1/channels/",
        {"kind": "email", "name": "ops", "email_addresses": "ops@example.org"},
        content_type="application/json",
    )
    assert created.status_code == 201
    channel_id = created.json()["id"]
    assert alice_client.post(f"/api/v1/channels/{channel_id}/test/").status_code == 202
    assert (
        alice_client.patch(
            f"/api/v1/channels/{channel_id}/", {"enabled": False}, content_type="application/json"
        ).json()["enabled"]
        is False
    )
    assert (
        alice_client.patch(
            f"/api/v1/channels/{channel_id}/", {"enabled": True}, content_type="application/json"
        ).json()["enabled"]
        is True
    )
    # bob is a member, not an admin: channels are admins' business.
    assert bob_client.delete(f"/api/v1/channels/{channel_id}/").status_code == 403
    assert alice_client.delete(f"/api/v1/channels/{channel_id}/").status_code == 204
    assert Channel.objects.get(uuid=channel_id).deleted_at is not None
    hook = alice_client.post(
        "/api/v1/channels/", {"kind": "webhook", "name": "no url"}, content_type="application/json"
    )
    assert hook.status_code == 400


def test_api_keys_create_list_and_revoke(alice_client, people) -> None:
    created = alice_client.post(
        "/api/v1/api-keys/", {"name": "ci", "scopes": ["read"]}, content_type="application/json"
    )
    assert created.status_code == 201 and created["Cache-Control"] == "no-store"
    secret = created.json()["secret"]
    assert key_client(secret).get("/api/v1/servers/").status_code == 200
    listed = alice_client.get("/api/v1/api-keys/").json()["results"]
    assert "secret" not in listed[0] and listed[0]["prefix"] == secret[:11]
    assert alice_client.delete(f"/api/v1/api-keys/{created.json()['id']}/").status_code == 204
    assert key_client(secret).get("/api/v1/servers/").status_code == 401


def test_a_key_cannot_mint_a_stronger_key(people, alice_read_key, alice_key) -> None:
    # A read key is refused by ScopePermission (creating keys wants manage); the scope rule itself
    # ("no more scopes than its own") is tested with lesser parents in test_key_escalation.py.
    refused = key_client(alice_read_key).post("/api/v1/api-keys/", {"scopes": ["read"]}, format="json")
    assert refused.status_code == 403 and refused.json()["detail"] == "Your key or role does not allow this."
    assert (
        key_client(alice_key).post("/api/v1/api-keys/", {"scopes": ["read", "manage"]}, format="json").status_code
        == 201
    )


def test_an_unconfirmed_key_cannot_use_v1(people) -> None:
    from api.services import claim_create

    result = claim_create(email="alice@example.org", secret="unconfirmed-key-012345", ip="192.0.2.1")
    assert result.status == "created"
    response = key_client("unconfirmed-key-012345").get("/api/v1/servers/")
    assert response.status_code == 403 and "not confirmed" in response.json()["detail"]
    assert ApiKey.objects.get(claim_email="alice@example.org").confirmed_at is None


def test_audit_log(alice_client, people, alice_key) -> None:
    actions = [e["action"] for e in alice_client.get("/api/v1/audit/").json()["results"]]
    assert "key_created" in actions


def test_members_and_invitations(alice_client, bob_client, people) -> None:
    emails = [m["email"] for m in alice_client.get("/api/v1/members/").json()["results"]]
    assert emails == ["alice@example.org", "bob@example.org"]
    invited = alice_client.post(
        "/api/v1/members/invite/", {"email": "dave@example.org", "role": "viewer"}, content_type="application/json"
    )
    assert invited.status_code == 201 and Invitation.objects.filter(email="dave@example.org").exists()
    assert (
        bob_client.post(
            "/api/v1/members/invite/", {"email": "eve@example.org"}, content_type="application/json"
        ).status_code
        == 403
    )
    again = alice_client.post("/api/v1/members/invite/", {"email": "bob@example.org"}, content_type="application/json")
    assert again.status_code == 400


def test_expiry_matches_the_v1_0_call(alice_client, world, alice_key) -> None:
    v1 = alice_client.get("/api/v1/expiry?host=www.example.com").json()
    v10 = key_client(alice_key).get("/api/v1.0/servers/expiration/www.example.com").json()
    assert v1 == v10 and v1["certificate_found"] is True
    assert alice_client.get("/api/v1/expiry?host=nowhere.example.com").status_code == 404
    assert alice_client.get("/api/v1/expiry").status_code == 400


def test_viewers_read_but_do_not_write(bob_client, people, world) -> None:
    Membership.objects.filter(user=people.bob, team=people.team_a).update(role=Role.VIEWER)
    assert bob_client.get("/api/v1/servers/").status_code == 200
    response = bob_client.post("/api/v1/servers/", {"host": "x.example.com"}, content_type="application/json")
    assert response.status_code == 403 and response.json()["error"] == "permission-denied"


def test_list_endpoints_have_constant_query_counts(
    alice_client, people, lab_issuer, django_assert_max_num_queries
) -> None:
    for _ in range(3):
        make_world_extra(people, lab_issuer)
    for url in [
        "/api/v1/certificates/",
        "/api/v1/findings/",
        "/api/v1/events/",
        "/api/v1/api-keys/",
        "/api/v1/audit/",
        "/api/v1/channels/",
        "/api/v1/members/",
        "/api/v1/domains/",
    ]:
        with django_assert_max_num_queries(8):
            assert alice_client.get(url).status_code == 200, url


def make_world_extra(people, issuer) -> None:
    """More of everything for team A (servers with other names)."""
    import uuid

    from api.services import apikey_create
    from events.services import event_record
    from monitors.models import Finding, Server
    from tests.api.conftest import scan_result_for

    name = f"s{uuid.uuid4().hex[:8]}.example.com"
    server = Server.objects.create(team=people.team_a, host=name, port=443)
    scan_result_for(server, address="192.0.2.9", der=issue(issuer, [name]).certificate)
    now = datetime.now(UTC)
    Finding.objects.create(
        team=people.team_a, server=server, code="expired", severity="error", message="x", first_seen=now, last_seen=now
    )
    event_record(team=people.team_a, kind="certificate_expired", subject=name, dedup_key=name)
    apikey_create(team=people.team_a, user=people.alice, scopes=["read"])
