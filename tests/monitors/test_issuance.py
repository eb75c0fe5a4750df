"""Unexpected issuance: the judgement, CAA look-ups against the lab DNS server, and the policy page."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.urls import reverse
from django.utils import timezone

from kcproto.issuance import Caa, Policy, caa_identifiers, normalise_pin, spki_sha256, unexpected_reasons
from lab.ctlog.certgen import issue, make_ca
from monitors.domains import domain_watch
from monitors.issuance import caa_lookup, caa_refresh, issuance_policy_set
from monitors.models import IssuancePolicy, WatchedDomain

LE = "CN=R11,O=Let's Encrypt,C=US"


@pytest.fixture(scope="module")
def lab_issuance():  # type: ignore[no-untyped-def]
    ca = make_ca("Example Corp Issuing CA")
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return issue(ca, ["www.corp.example"], public_key=key)


# --- the judgement (pure) -------------------------------------------------------------------


def test_caa_identifiers_of_well_known_issuers() -> None:
    assert caa_identifiers(LE) == {"letsencrypt.org"}
    assert "pki.goog" in caa_identifiers("CN=WR1,O=Google Trust Services,C=US")
    assert "sectigo.com" in caa_identifiers("CN=ZeroSSL RSA Domain Secure Site CA,O=ZeroSSL,C=AT")
    assert caa_identifiers("CN=Example Corp Issuing CA,O=Example Corp") == frozenset()


def test_allowed_issuers_match_caa_identifiers_or_issuer_text(lab_issuance) -> None:
    der = lab_issuance.certificate
    names = ["www.corp.example"]
    assert (
        unexpected_reasons(
            issuer=LE, names=names, der=der, policy=Policy(allowed_issuers=frozenset({"letsencrypt.org"}))
        )
        == []
    )
    corp = "CN=Example Corp Issuing CA,O=Example Corp"
    assert (
        unexpected_reasons(
            issuer=corp, names=names, der=der, policy=Policy(allowed_issuers=frozenset({"example corp"}))
        )
        == []
    )
    reasons = unexpected_reasons(
        issuer=corp, names=names, der=der, policy=Policy(allowed_issuers=frozenset({"letsencrypt.org"}))
    )
    assert reasons == [f"issuer {corp} is not one of the team's allowed CAs"]


def test_caa_rules_for_names_and_wildcards(lab_issuance) -> None:
    der = lab_issuance.certificate
    policy = Policy()
    le_only = Caa("corp.example", True, frozenset({"letsencrypt.org"}))
    assert unexpected_reasons(issuer=LE, names=["a.corp.example"], der=der, policy=policy, caa=[le_only]) == []
    google = "CN=WR1,O=Google Trust Services,C=US"
    reasons = unexpected_reasons(issuer=google, names=["a.corp.example"], der=der, policy=policy, caa=[le_only])
    assert reasons == [f"the CAA record of corp.example allows letsencrypt.org, not {google}"]
    # issuewild governs wildcards when present; an empty set means no CA at all.
    no_wild = Caa("corp.example", True, frozenset({"letsencrypt.org"}), frozenset())
    assert unexpected_reasons(issuer=LE, names=["*.corp.example"], der=der, policy=policy, caa=[no_wild]) == [
        f"the CAA record of corp.example allows no CA at all, not {LE}"
    ]
    assert unexpected_reasons(issuer=LE, names=["www.corp.example"], der=der, policy=policy, caa=[no_wild]) == []
    # No CAA record: anyone may issue. CAA checking switched off: ignored.
    assert (
        unexpected_reasons(
            issuer=google, names=["a.corp.example"], der=der, policy=policy, caa=[Caa("corp.example", False)]
        )
        == []
    )
    assert unexpected_reasons(issuer=google, names=["a"], der=der, policy=Policy(check_caa=False), caa=[le_only]) == []


def test_known_keys(lab_issuance) -> None:
    der = lab_issuance.certificate
    pin = spki_sha256(der)
    assert spki_sha256(lab_issuance.precertificate) == pin  # one issuance, one key
    assert unexpected_reasons(issuer=LE, names=["x"], der=der, policy=Policy(known_keys=frozenset({pin}))) == []
    reasons = unexpected_reasons(issuer=LE, names=["x"], der=der, policy=Policy(known_keys=frozenset({"0" * 64})))
    assert len(reasons) == 1 and "not one of the team's known keys" in reasons[0]
    assert normalise_pin(":".join(pin[i : i + 2].upper() for i in range(0, 64, 2))) == pin
    with pytest.raises(ValueError, match="64 hex digits"):
        normalise_pin("not-a-pin")


# --- CAA from DNS ---------------------------------------------------------------------------


def test_caa_lookup_climbs_to_the_closest_record_set(lab_dns) -> None:
    servers = [("127.0.0.1", lab_dns.port)]
    lab_dns.set("shop.caa-one.test", ["127.0.0.1"])
    lab_dns.set_caa(
        "caa-one.test",
        [
            (0, "issue", "letsencrypt.org"),
            (0, "issue", "pki.goog; cansignhttpexchanges=yes"),
            (0, "iodef", "mailto:x@y"),
        ],
    )
    found = caa_lookup("shop.caa-one.test", nameservers=servers, timeout=1.0)
    assert found.found and found.domain == "caa-one.test"
    assert found.issue == ("letsencrypt.org", "pki.goog")
    assert found.issuewild is None

    lab_dns.set_caa("wild.caa-one.test", [(0, "issue", "letsencrypt.org"), (0, "issuewild", ";")])
    found = caa_lookup("wild.caa-one.test", nameservers=servers, timeout=1.0)
    assert found.domain == "wild.caa-one.test" and found.issuewild == ()

    lab_dns.set_caa("crit.caa-one.test", [(0, "issue", "letsencrypt.org"), (128, "futuretag", "x")])
    found = caa_lookup("crit.caa-one.test", nameservers=servers, timeout=1.0)
    assert found.found and found.issue == () and found.issuewild == ()

    nothing = caa_lookup("nothing.caa-none.test", nameservers=servers, timeout=1.0)
    assert not nothing.found and not nothing.error

    lab_dns.set("broken.caa-two.test", "SERVFAIL")
    broken = caa_lookup("broken.caa-two.test", nameservers=servers, timeout=1.0)
    assert broken.error.startswith("broken.caa-two.test")


@pytest.mark.django_db
def test_caa_refresh_reads_each_name_once_for_every_team(people, lab_dns, settings) -> None:
    settings.KEYCHEST_DNS_NAMESERVERS = [lab_dns.nameserver]
    settings.KEYCHEST_DNS_TIMEOUT = 1.0
    lab_dns.set_caa("shared-caa.test", [(0, "issue", "letsencrypt.org")])
    a = domain_watch(team=people.team_a, domain="shared-caa.test")
    b = domain_watch(team=people.team_b, domain="shared-caa.test")
    before = lab_dns.queries[("shared-caa.test", "CAA")]
    assert caa_refresh() == 1
    assert lab_dns.queries[("shared-caa.test", "CAA")] == before + 1
    for row in WatchedDomain.objects.filter(pk__in=[a.pk, b.pk]):
        assert row.caa_found is True and row.caa_issue == ["letsencrypt.org"] and row.caa_checked_at
    assert caa_refresh() == 0  # fresh: nothing to read
    assert caa_refresh(now=timezone.now() + dt.timedelta(hours=13)) == 1

    # A failed read keeps what was known and records the error.
    lab_dns.set("shared-caa.test", "SERVFAIL")
    lab_dns.caa.pop("shared-caa.test")
    caa_refresh(now=timezone.now() + dt.timedelta(hours=26))
    row = WatchedDomain.objects.get(pk=a.pk)
    assert row.caa_found is True and row.caa_issue == ["letsencrypt.org"] and row.caa_error


# --- the policy service and page --------------------------------------------------------------


@pytest.mark.django_db
def test_policy_service_normalises_and_refuses_bad_pins(people, lab_issuance) -> None:
    pin = spki_sha256(lab_issuance.certificate)
    policy = issuance_policy_set(
        team=people.team_a,
        allowed_issuers=[" LetsEncrypt.org ", "letsencrypt.org", ""],
        known_keys=[pin.upper()],
        check_caa=False,
    )
    assert policy.allowed_issuers == ["letsencrypt.org"] and policy.known_keys == [pin] and not policy.check_caa
    with pytest.raises(ValueError, match="64 hex digits"):
        issuance_policy_set(team=people.team_a, allowed_issuers=[], known_keys=["abc"], check_caa=True)
    assert IssuancePolicy.objects.get(team=people.team_a).known_keys == [pin]  # unchanged


@pytest.mark.django_db
def test_policy_page_roles_and_tenancy(people, alice_client, bob_client, charlie_client) -> None:
    url = reverse("issuance_policy")
    domain_watch(team=people.team_a, domain="alpha.example")
    domain_watch(team=people.team_b, domain="bravo.example")
    WatchedDomain.objects.filter(domain="alpha.example").update(
        caa_found=True, caa_issue=["<script>x</script>"], caa_checked_at=timezone.now()
    )
    page = alice_client.get(url).content.decode()
    assert 'data-testid="policy-form"' in page
    assert "alpha.example" in page and "bravo.example" not in page
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page

    response = alice_client.post(
        url, {"allowed_issuers": "letsencrypt.org\npki.goog", "known_keys": "", "check_caa": "on"}
    )
    assert response.status_code == 302
    assert IssuancePolicy.objects.get(team=people.team_a).allowed_issuers == ["letsencrypt.org", "pki.goog"]
    bad = alice_client.post(url, {"allowed_issuers": "", "known_keys": "nope", "check_caa": "on"})
    assert bad.status_code == 200 and "64 hex digits" in bad.content.decode()

    # bob is a member of team A: he reads the policy but cannot change it.
    page = bob_client.get(url).content.decode()
    assert 'data-testid="policy-readonly"' in page and "pki.goog" in page
    assert bob_client.post(url, {"allowed_issuers": "evil.example"}).status_code == 403
    assert IssuancePolicy.objects.get(team=people.team_a).allowed_issuers == ["letsencrypt.org", "pki.goog"]

    # charlie edits his own team only.
    assert charlie_client.post(url, {"allowed_issuers": "digicert.com", "check_caa": "on"}).status_code == 302
    assert IssuancePolicy.objects.get(team=people.team_b).allowed_issuers == ["digicert.com"]
    assert IssuancePolicy.objects.get(team=people.team_a).allowed_issuers == ["letsencrypt.org", "pki.goog"]


@pytest.mark.django_db
def test_caa_refresh_stops_at_its_time_budget(people, lab_dns, settings) -> None:
    settings.KEYCHEST_DNS_NAMESERVERS = [lab_dns.nameserver]
    settings.KEYCHEST_DNS_TIMEOUT = 0.3
    for i in range(3):
        lab_dns.set(f"slow{i}.caa-budget.test", "TIMEOUT")
        domain_watch(team=people.team_a, domain=f"slow{i}.caa-budget.test")
    # Each name times out (0.3 s per query); a 0.1 s budget lets the run start one and stop.
    assert caa_refresh(budget=0.1) == 1
    assert WatchedDomain.objects.exclude(caa_checked_at=None).count() == 1


@pytest.mark.django_db
def test_known_keys_may_be_pasted_as_pem_certificates_or_public_keys(people, alice_client, lab_issuance) -> None:
    """Issue 14 item 13: no need to compute SPKI hashes by hand; private keys are refused."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    certificate = x509.load_der_x509_certificate(lab_issuance.certificate)
    cert_pem = certificate.public_bytes(Encoding.PEM).decode()
    other_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = other_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    hex_pin = "ab" * 32
    url = reverse("issuance_policy")
    response = alice_client.post(url, {"allowed_issuers": "", "known_keys": f"{cert_pem}\n{key_pem}\n{hex_pin}\n"})
    assert response.status_code == 302
    expected_key = spki_sha256(lab_issuance.certificate)
    other = other_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    import hashlib

    assert IssuancePolicy.objects.get(team=people.team_a).known_keys == [
        expected_key,
        hashlib.sha256(other).hexdigest(),
        hex_pin,
    ]
    private = other_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    refused = alice_client.post(url, {"allowed_issuers": "", "known_keys": private})
    assert refused.status_code == 200 and "never the private key" in refused.content.decode()
    assert "PRIVATE KEY" not in refused.content.decode()  # never shown back
