"""Every finding code, produced by a real scan of a real lab server, and cleared when fixed."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certificates.services import certificate_store_der
from lab.pki import CA, now, self_signed
from monitors.models import Finding, ScanResult, Server, TimelineEntry
from monitors.scanning import ScanConfig, scan_servers
from monitors.services import ca_bundle_create, server_enrol
from notifications.models import Event

pytestmark = pytest.mark.django_db
_DER = Encoding.DER


@pytest.fixture
def watch(people, lab, lab_settings):  # type: ignore[no-untyped-def]
    bundle = ca_bundle_create(team=people.team_a, name="lab root", pem=lab.root_pem)

    def make(name: str, port: int, **kwargs) -> Server:  # type: ignore[no-untyped-def]
        return server_enrol(team=people.team_a, host=f"{name}:{port}", ca_bundle=bundle, **kwargs)

    return make


def scan(server: Server, **kwargs) -> set[str]:  # type: ignore[no-untyped-def]
    fresh = Server.objects.select_related("ca_bundle").get(pk=server.pk)
    scan_servers([fresh], **kwargs)
    return set(Finding.objects.filter(server=server, resolved_at=None).values_list("code", flat=True))


def move_to_a_good_endpoint(server: Server, lab, name: str) -> None:  # type: ignore[no-untyped-def]
    """The fix for a broken service: the server now listens where a healthy TLS service runs."""
    endpoint = lab.tls(lab.leaf([name]))
    Server.objects.filter(pk=server.pk).update(port=endpoint.port)


def test_a_healthy_server_has_no_findings(lab, lab_name, watch) -> None:
    name = lab_name("valid")
    endpoint = lab.tls(lab.leaf([name]))
    server = watch(name, endpoint.port)
    assert scan(server) == set()
    result = ScanResult.objects.get(server=server, current=True)
    assert result.address == "127.0.0.1"
    assert result.tls_version == "TLSv1.3"
    assert result.trusted is True
    assert len(result.chain_sha256) == 2
    assert result.names == [name]
    # The certificates went to the certificate store, deduplicated by SHA-256.
    from certificates.models import Certificate

    assert Certificate.objects.filter(sha256__in=result.chain_sha256).count() == 2


def test_expired_then_renewed(lab, lab_name, watch) -> None:
    name = lab_name("expired")
    endpoint = lab.tls(
        lab.leaf([name], not_before=now() - dt.timedelta(days=100), not_after=now() - dt.timedelta(days=10))
    )
    server = watch(name, endpoint.port)
    assert scan(server) == {"expired"}
    finding = Finding.objects.get(server=server, code="expired")
    assert finding.severity == "critical" and finding.address == "127.0.0.1"
    endpoint.serve(lab.leaf([name]))
    assert scan(server) == {"certificate_changed"}
    finding.refresh_from_db()
    assert finding.resolved_at is not None
    assert scan(server) == set()


def test_not_yet_valid(lab, lab_name, watch) -> None:
    name = lab_name("future")
    endpoint = lab.tls(
        lab.leaf([name], not_before=now() + dt.timedelta(days=2), not_after=now() + dt.timedelta(days=92))
    )
    server = watch(name, endpoint.port)
    assert scan(server) == {"not_yet_valid"}
    endpoint.serve(lab.leaf([name]))
    assert "not_yet_valid" not in scan(server)


@pytest.mark.parametrize(
    ("left_days", "code"),
    [(20, "renewal_due"), (10, "renewal_overdue"), (40, None)],
)
def test_renewal_is_judged_by_the_certificates_own_lifetime(lab, lab_name, watch, left_days, code) -> None:
    name = lab_name("renewal")
    endpoint = lab.tls(
        lab.leaf(
            [name], not_before=now() - dt.timedelta(days=90 - left_days), not_after=now() + dt.timedelta(days=left_days)
        )
    )
    server = watch(name, endpoint.port)
    assert scan(server) == ({code} if code else set())
    endpoint.serve(lab.leaf([name]))
    assert scan(server) == {"certificate_changed"}


def test_a_six_day_certificate_with_one_day_left_is_overdue(lab, lab_name, watch) -> None:
    name = lab_name("shortlived")
    endpoint = lab.tls(
        lab.leaf([name], not_before=now() - dt.timedelta(days=5, hours=2), not_after=now() + dt.timedelta(hours=22))
    )
    assert scan(watch(name, endpoint.port)) == {"renewal_overdue"}


def test_per_server_thresholds_override_the_defaults(lab, lab_name, watch) -> None:
    name = lab_name("threshold")
    endpoint = lab.tls(
        lab.leaf([name], not_before=now() - dt.timedelta(days=40), not_after=now() + dt.timedelta(days=50))
    )
    assert scan(watch(name, endpoint.port, due_fraction=0.6)) == {"renewal_due"}


def test_hostname_mismatch(lab, lab_name, watch) -> None:
    name = lab_name("mismatch")
    endpoint = lab.tls(lab.leaf(["other.keychest.test"]))
    server = watch(name, endpoint.port)
    assert scan(server) == {"hostname_mismatch"}
    endpoint.serve(lab.leaf([f"*.{name.split('.', 1)[1]}"]))  # a wildcard covering the name
    assert scan(server) == {"certificate_changed"}


def test_self_signed(lab, lab_name, watch) -> None:
    name = lab_name("selfsigned")
    endpoint = lab.tls(self_signed([name]))
    server = watch(name, endpoint.port)
    assert scan(server) == {"self_signed"}
    endpoint.serve(lab.leaf([name]))
    assert scan(server) >= {"certificate_changed", "issuer_changed"}
    assert "self_signed" not in scan(server)


def test_untrusted_root(lab, lab_name, watch) -> None:
    name = lab_name("untrusted")
    rogue = CA("Rogue Root").intermediate("Rogue Intermediate")
    endpoint = lab.tls(rogue.issue([name]), include_root=True)
    server = watch(name, endpoint.port)
    assert scan(server) == {"untrusted"}
    assert "Rogue Root" in Finding.objects.get(server=server, code="untrusted").message
    endpoint.serve(lab.leaf([name]))
    assert "untrusted" not in scan(server)


def test_missing_intermediate(lab, lab_name, watch) -> None:
    name = lab_name("incomplete")
    endpoint = lab.tls(lab.leaf([name]), include_intermediates=False)
    server = watch(name, endpoint.port)
    # The intermediate is unknown: the path cannot be completed at all.
    assert scan(server) == {"incomplete_chain", "untrusted"}
    # Once the certificate store knows the intermediate, the chain is trusted but incomplete.
    certificate_store_der(der=lab.intermediate.cert.public_bytes(_DER), source="ct")
    assert scan(server) == {"incomplete_chain"}
    endpoint.serve(lab.leaf([name]))
    assert scan(server) == {"certificate_changed"}


def test_ca_flag_on_a_leaf(lab, lab_name, watch) -> None:
    name = lab_name("caleaf")
    endpoint = lab.tls(lab.leaf([name], ca_flag=True))
    server = watch(name, endpoint.port)
    assert scan(server) == {"ca_leaf"}
    endpoint.serve(lab.leaf([name]))
    assert "ca_leaf" not in scan(server)


def test_weak_key(lab, lab_name, watch) -> None:
    name = lab_name("weakkey")
    endpoint = lab.tls(lab.leaf([name], key_kind="rsa", key_size=1024))
    server = watch(name, endpoint.port)
    assert scan(server) == {"weak_key"}
    assert "RSA 1024" in Finding.objects.get(server=server, code="weak_key").message
    endpoint.serve(lab.leaf([name]))
    assert "weak_key" not in scan(server)


def test_weak_signature(lab, lab_name, watch) -> None:
    name = lab_name("sha1")
    rsa_intermediate = lab.root.intermediate("KeyChest Lab RSA Intermediate", key_kind="rsa")
    endpoint = lab.tls(rsa_intermediate.issue([name], key_kind="rsa", sha1=True))
    server = watch(name, endpoint.port)
    assert scan(server) == {"weak_signature"}
    endpoint.serve(rsa_intermediate.issue([name], key_kind="rsa"))
    assert scan(server) == {"certificate_changed"}


def test_legacy_tls(lab, lab_name, watch) -> None:
    name = lab_name("legacy")
    endpoint = lab.tls(lab.leaf([name]), legacy=True)
    server = watch(name, endpoint.port)
    assert scan(server) == {"legacy_tls"}
    # Every legacy version accepted, by its name; clients still connect with TLS 1.3: a warning.
    assert ScanResult.objects.get(server=server, current=True).legacy_tls == ["TLS 1.0", "TLS 1.1"]
    finding = Finding.objects.get(server=server, code="legacy_tls")
    assert finding.severity == "warning" and finding.message == "The server also accepts TLS 1.0, TLS 1.1"
    endpoint.serve(lab.leaf([name]))
    assert "legacy_tls" not in scan(server, now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=25))


def test_the_legacy_probe_runs_once_a_day_and_its_answer_stands_meanwhile(lab, lab_name, watch) -> None:
    name = lab_name("legacyday")
    endpoint = lab.tls(lab.leaf([name]), legacy=True)
    server = watch(name, endpoint.port)
    assert scan(server) == {"legacy_tls"}
    checked = Server.objects.get(pk=server.pk).legacy_checked_at
    endpoint.serve(lab.leaf([name]))  # TLS 1.0/1.1 switched off (with a new certificate)
    assert scan(server) == {"legacy_tls", "certificate_changed"}  # not re-probed within the day
    assert Server.objects.get(pk=server.pk).legacy_checked_at == checked
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)
    assert scan(server, now=later) == set()


def test_a_certificate_with_a_broken_extension_is_monitored_and_reported(lab, lab_name, watch) -> None:
    name = lab_name("malformed")
    endpoint = lab.tls(lab.leaf([name], broken_extension=True))
    server = watch(name, endpoint.port)
    assert scan(server) == {"malformed_certificate"}
    # The verifier (and OpenSSL) accept the chain: a warning, and the certificate is watched.
    finding = Finding.objects.get(server=server, code="malformed_certificate")
    assert finding.severity == "warning" and "Invalid SCT length" in finding.message
    result = ScanResult.objects.get(server=server, current=True)
    assert result.leaf_sha256 and result.not_after is not None and result.trusted is True
    endpoint.serve(lab.leaf([name]))
    assert scan(server) == {"certificate_changed"}
    assert scan(server) == set()


def test_too_many_certificates_in_the_chain(lab, lab_name, watch) -> None:
    name = lab_name("longchain")
    filler = [lab.leaf([f"filler{i}.keychest.test"]) for i in range(18)]
    endpoint = lab.tls(lab.leaf([name]), extra=filler)
    server = watch(name, endpoint.port)
    assert scan(server) == {"chain_too_long"}
    endpoint.serve(lab.leaf([name]))
    assert scan(server) == {"certificate_changed"}


def test_different_certificates_on_different_addresses(lab, lab_name, watch) -> None:
    hosts = ["127.0.0.1", "127.0.0.2"]
    name = lab_name("disagree", *hosts)
    old, new = lab.leaf([name]), lab.leaf([name])
    endpoint = lab.tls(old, hosts=hosts)
    endpoint.serve(new, host="127.0.0.2")
    server = watch(name, endpoint.port)
    assert scan(server) == {"ips_disagree"}
    finding = Finding.objects.get(server=server, code="ips_disagree")
    assert finding.address == "" and "127.0.0.1" in finding.message and "127.0.0.2" in finding.message
    assert ScanResult.objects.filter(server=server, current=True).count() == 2
    endpoint.serve(new)  # the deployment finishes
    assert scan(server) == {"certificate_changed"}
    assert Finding.objects.get(pk=finding.pk).resolved_at is not None
    assert Event.objects.filter(team=server.team, kind="ips_disagree").count() == 1


def test_certificate_and_issuer_changes_are_findings_events_and_timeline(lab, lab_name, watch) -> None:
    name = lab_name("change")
    endpoint = lab.tls(lab.leaf([name]))
    server = watch(name, endpoint.port)
    assert scan(server) == set()
    other_intermediate = lab.root.intermediate("KeyChest Lab Intermediate 2")
    endpoint.serve(other_intermediate.issue([name]))
    assert scan(server) == {"certificate_changed", "issuer_changed"}
    kinds = list(TimelineEntry.objects.filter(server=server).order_by("at", "id").values_list("kind", flat=True))
    assert kinds == ["address_added", "certificate_changed", "issuer_changed"]
    assert ScanResult.objects.filter(server=server).count() == 2
    assert Event.objects.filter(team=server.team, kind="certificate_changed").count() == 1
    assert Event.objects.filter(team=server.team, kind="issuer_changed").count() == 1
    # Nothing changes on the next scan: the findings clear, no new result row is written.
    assert scan(server) == set()
    assert ScanResult.objects.filter(server=server).count() == 2


def test_a_renewed_certificate_that_is_not_deployed(lab, lab_name, watch) -> None:
    name = lab_name("notdeployed")
    endpoint = lab.tls(lab.leaf([name], not_before=now() - dt.timedelta(days=40)))
    server = watch(name, endpoint.port)
    newer = lab.leaf([name], not_before=now() - dt.timedelta(days=2))
    certificate_store_der(der=newer.der, source="ct")
    assert scan(server) == {"newer_certificate_not_deployed"}
    endpoint.serve(newer)
    assert scan(server) == {"certificate_changed"}


def test_another_teams_upload_is_no_renewal_of_my_server(lab, lab_name, watch, people) -> None:
    from api.enrolment import certificate_upload

    name = lab_name("uploadedelsewhere")
    endpoint = lab.tls(lab.leaf([name], not_before=now() - dt.timedelta(days=40)))
    server = watch(name, endpoint.port)
    newer = lab.leaf([name], not_before=now() - dt.timedelta(days=2))
    # Charlie's team uploads a newer certificate for the name: private to his team, so alice's
    # findings must neither cite it nor reveal that it exists (issue 22 item 2).
    certificate_upload(team=people.team_b, der=newer.der, user=people.charlie)
    assert scan(server) == set()


def test_sixty_certificates_from_a_private_ca_give_no_rate_limit_risk(lab, watch, lab_dns) -> None:
    # Let's Encrypt's weekly limit counts Let's Encrypt's certificates only: a company's own CA
    # may issue as many as it likes for one registered domain.
    name = "www.own-ca-keychest.test"
    lab_dns.set(name, ["127.0.0.1"])
    endpoint = lab.tls(lab.leaf([name]))
    server = watch(name, endpoint.port)
    for i in range(60):
        certificate_store_der(
            der=lab.leaf([f"h{i}.own-ca-keychest.test"], not_before=now() - dt.timedelta(hours=1)).der, source="ct"
        )
    assert scan(server) == set()


def test_fifty_lets_encrypt_certificates_give_rate_limit_risk(lab, watch, lab_dns) -> None:
    name = "www.ratelimited-keychest.test"
    lab_dns.set(name, ["127.0.0.1"])
    endpoint = lab.tls(lab.leaf([name]))
    server = watch(name, endpoint.port)
    # A lab CA whose issuer name carries Let's Encrypt's CAA identity.
    lets_encrypt = CA("Let's Encrypt Lab R11")
    for i in range(50):
        certificate_store_der(
            der=lets_encrypt.issue([f"h{i}.ratelimited-keychest.test"], not_before=now() - dt.timedelta(hours=1)).der,
            source="ct",
        )
    assert scan(server) == {"rate_limit_risk"}
    finding = Finding.objects.get(server=server, code="rate_limit_risk")
    assert finding.address == "" and "50 of 50 certificates issued for ratelimited-keychest.test" in finding.message
    # A week later the window has moved on.
    assert scan(server, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=8)) == set()


def test_dns_failure_then_fixed(lab, lab_dns, watch) -> None:
    name = "nowhere-dns.keychest.test"
    endpoint = lab.tls(lab.leaf([name]))
    server = watch(name, endpoint.port)
    assert scan(server) == {"dns_failure"}
    lab_dns.set(name, ["127.0.0.1"])
    assert scan(server) == set()


def test_no_addresses(lab, lab_dns, watch) -> None:
    name = "empty-dns.keychest.test"
    lab_dns.set(name, [])
    server = watch(name, 443)
    assert scan(server) == {"no_addresses"}
    endpoint = lab.tls(lab.leaf([name]))
    lab_dns.set(name, ["127.0.0.1"])
    Server.objects.filter(pk=server.pk).update(port=endpoint.port)
    assert scan(server) == set()


def test_private_targets_are_refused_unless_allowed(lab, lab_name, watch) -> None:
    name = lab_name("private", "127.0.0.1", "10.1.2.3")
    endpoint = lab.tls(lab.leaf([name]))
    server = watch(name, endpoint.port)
    refused = scan(server, config=ScanConfig.from_settings(allow_private=False))
    assert refused == {"target_refused"}
    assert set(Finding.objects.filter(server=server, resolved_at=None).values_list("address", flat=True)) == {
        "127.0.0.1",
        "10.1.2.3",
    }
    # Nothing was ever connected to: no result row for any address.
    assert not ScanResult.objects.filter(server=server).exists()


def test_a_pinned_private_address_is_refused_too(lab, lab_name, watch) -> None:
    name = lab_name("pinned")
    endpoint = lab.tls(lab.leaf([name]))
    server = watch(name, endpoint.port, pinned_ip="127.0.0.1")
    assert scan(server, config=ScanConfig.from_settings(allow_private=False)) == {"target_refused"}
    assert scan(server) == set()


def test_connect_failed_then_fixed(lab, lab_name, watch) -> None:
    name = lab_name("closed")
    port = lab.closed_port()
    server = watch(name, port)
    assert scan(server) == {"connect_failed"}
    endpoint = lab.tls(lab.leaf([name]))
    Server.objects.filter(pk=server.pk).update(port=endpoint.port)
    assert scan(server) == set()


def test_not_tls(lab, lab_name, watch) -> None:
    name = lab_name("banner")
    endpoint = lab.banner()
    server = watch(name, endpoint.port)
    assert scan(server) == {"not_tls"}
    move_to_a_good_endpoint(server, lab, name)
    assert scan(server) == set()


def test_tls_handshake_failed(lab, lab_name, watch) -> None:
    name = lab_name("flood")
    endpoint = lab.flood()
    server = watch(name, endpoint.port)
    assert scan(server) == {"tls_handshake_failed"}
    move_to_a_good_endpoint(server, lab, name)
    assert scan(server) == set()


def test_no_certificate(lab, lab_name, watch) -> None:
    name = lab_name("anonymous")
    endpoint = lab.anonymous()
    server = watch(name, endpoint.port)
    assert scan(server) == {"no_certificate"}
    move_to_a_good_endpoint(server, lab, name)
    assert scan(server) == set()


@pytest.mark.slow
def test_silent_and_trickling_servers_end_in_a_timeout_within_the_deadline(lab, lab_name, watch) -> None:
    silent, trickle = lab.silent(), lab.trickle()
    servers = [watch(lab_name("silent"), silent.port), watch(lab_name("trickle"), trickle.port)]
    started = time.monotonic()
    scan_servers(list(Server.objects.filter(pk__in=[s.pk for s in servers]).select_related("ca_bundle")))
    assert time.monotonic() - started < 4.0  # deadline 2 s, both scanned concurrently
    for server in servers:
        assert set(Finding.objects.filter(server=server, resolved_at=None).values_list("code", flat=True)) == {
            "timeout"
        }


@pytest.mark.parametrize("protocol", ["smtp", "imap", "pop3", "ftp", "ldap", "xmpp", "postgres"])
def test_starttls_servers_are_scanned_after_the_dialogue(lab, lab_name, watch, protocol) -> None:
    name = lab_name(protocol)
    endpoint = lab.starttls(protocol, lab.leaf([name]))
    server = watch(name, endpoint.port, protocol=protocol)
    assert scan(server) == set()
    assert ScanResult.objects.get(server=server, current=True).leaf_sha256


def test_a_mail_server_without_starttls_is_not_tls(lab, lab_name, watch) -> None:
    name = lab_name("plainsmtp")
    endpoint = lab.starttls("smtp", lab.leaf([name]), offer=False)
    server = watch(name, endpoint.port, protocol="smtp")
    assert scan(server) == {"not_tls"}
    assert "STARTTLS" in Finding.objects.get(server=server).message


def test_findings_open_and_resolve_as_events(lab, lab_name, watch) -> None:
    name = lab_name("events")
    endpoint = lab.tls(lab.leaf([name], ca_flag=True))
    server = watch(name, endpoint.port)
    scan(server)
    scan(server)  # seen again: no second event
    assert Event.objects.filter(team=server.team, kind="finding_opened").count() == 1
    endpoint.serve(lab.leaf([name]))
    scan(server)
    assert Event.objects.filter(team=server.team, kind="finding_resolved", payload__code="ca_leaf").count() == 1


def test_a_renewal_loop_nears_lets_encrypts_duplicate_limit(lab, watch, lab_dns) -> None:
    name = "www.renewal-loop-keychest.test"
    lab_dns.set(name, ["127.0.0.1"])
    # A CA named like Let's Encrypt's: the duplicate limit is Let's Encrypt's.
    le = CA("Let's Encrypt Lab R11")
    issued = [le.issue([name], not_before=now() - dt.timedelta(hours=i + 1)) for i in range(4)]
    for one in issued:
        certificate_store_der(der=one.der, source="ct")
    endpoint = lab.tls(issued[0])
    server = watch(name, endpoint.port)
    found = scan(server)
    assert "rate_limit_risk" in found
    finding = Finding.objects.get(server=server, code="rate_limit_risk")
    assert "4 of 5 certificates for exactly the names www.renewal-loop-keychest.test" in finding.message
    # A lab CA that is not Let's Encrypt: no duplicate warning.
    other = "www.no-loop-keychest.test"
    lab_dns.set(other, ["127.0.0.1"])
    for i in range(4):
        certificate_store_der(der=lab.leaf([other], not_before=now() - dt.timedelta(hours=i + 1)).der, source="ct")
    endpoint = lab.tls(lab.leaf([other]))
    assert "rate_limit_risk" not in scan(watch(other, endpoint.port))
