from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certificates.models import Certificate, CertificateName, CertificateSource, SourceKind
from certificates.services import (
    StoreItem,
    certificate_duplicates_count,
    certificate_issuances_count,
    certificate_store_der,
    certificates_for,
    certificates_store_bulk,
    duplicate_issuances,
    newest_certificate_for_name,
    rate_limit_usage,
)
from kcproto.names import InvalidName
from kcproto.x509 import CertificateParseError, parse_certificate
from lab.ctlog.certgen import Issuer, issue, make_ca

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def test_storing_twice_keeps_one_row_and_adds_the_source(lab_ca: Issuer) -> None:
    der = issue(lab_ca, ["www.example.com", "example.com"]).certificate
    first = certificate_store_der(der=der, source=SourceKind.SCAN, source_ref="www.example.com:443")
    again = certificate_store_der(der=der, source=SourceKind.UPLOAD, source_ref="api")
    assert first.pk == again.pk
    assert Certificate.objects.count() == 1
    assert set(CertificateSource.objects.values_list("kind", "ref")) == {
        ("scan", "www.example.com:443"),
        ("upload", "api"),
    }
    assert sorted(CertificateName.objects.values_list("name", flat=True)) == ["example.com", "www.example.com"]
    assert bytes(first.der) == der


def test_the_name_table_holds_reversed_names_registered_domains_and_wildcards(lab_ca: Issuer) -> None:
    der = issue(lab_ca, ["www.example.co.uk", "*.example.co.uk"]).certificate
    cert = certificate_store_der(der=der, source=SourceKind.UPLOAD)
    rows = {r.name: r for r in cert.names.all()}
    assert rows["www.example.co.uk"].reversed_name == "uk.co.example.www"
    assert rows["www.example.co.uk"].registered_domain == "example.co.uk"
    assert rows["*.example.co.uk"].is_wildcard
    assert not rows["www.example.co.uk"].is_wildcard
    assert rows["*.example.co.uk"].not_after == cert.not_after


def test_malformed_certificates_are_refused(db: None) -> None:
    with pytest.raises(CertificateParseError):
        certificate_store_der(der=b"\x30\x00", source=SourceKind.UPLOAD)
    assert Certificate.objects.count() == 0


def test_an_unknown_source_is_refused(lab_ca: Issuer) -> None:
    with pytest.raises(ValueError, match="source"):
        certificate_store_der(der=issue(lab_ca, ["x.example.com"]).certificate, source="carrier-pigeon")


def test_bulk_store_reports_only_new_certificates(lab_ca: Issuer) -> None:
    a = parse_certificate(issue(lab_ca, ["a.example.com"]).certificate)
    b = parse_certificate(issue(lab_ca, ["b.example.com"]).certificate)
    first = certificates_store_bulk(items=[StoreItem(a, SourceKind.CT, "log1:0")])
    assert [p.sha256 for p in first.new] == [a.sha256]
    second = certificates_store_bulk(
        items=[
            StoreItem(a, SourceKind.CT, "log2:5"),
            StoreItem(b, SourceKind.CT, "log2:6"),
            StoreItem(b, SourceKind.CT, "log2:6"),
        ]
    )
    assert [p.sha256 for p in second.new] == [b.sha256]
    assert set(second.ids) == {a.sha256, b.sha256}
    assert CertificateSource.objects.filter(certificate_id=second.ids[a.sha256]).count() == 2
    assert CertificateSource.objects.count() == 3


def test_certificates_for_finds_the_domain_its_subdomains_and_covering_wildcards(lab_ca: Issuer) -> None:
    apex = certificate_store_der(der=issue(lab_ca, ["example.com"]).certificate, source=SourceKind.CT)
    deep = certificate_store_der(der=issue(lab_ca, ["a.b.example.com"]).certificate, source=SourceKind.CT)
    wild = certificate_store_der(der=issue(lab_ca, ["*.example.com"]).certificate, source=SourceKind.CT)
    certificate_store_der(
        der=issue(lab_ca, ["notexample.com", "example.com.evil.net"]).certificate, source=SourceKind.CT
    )
    assert set(certificates_for("example.com")) == {apex, deep, wild}
    assert set(certificates_for("Example.COM.", include_subdomains=False)) == {apex}
    assert set(certificates_for("www.example.com", include_subdomains=False)) == {wild}
    assert set(certificates_for("a.b.example.com")) == {deep}
    with pytest.raises(InvalidName):
        certificates_for("not a domain")


def test_certificates_for_shows_one_issuance_once(lab_ca: Issuer) -> None:
    issuance = issue(lab_ca, ["once.example.com"])
    pre = certificate_store_der(der=issuance.precertificate, source=SourceKind.CT, source_ref="log:1")
    assert list(certificates_for("once.example.com")) == [pre]
    final = certificate_store_der(der=issuance.certificate, source=SourceKind.CT, source_ref="log:2")
    assert list(certificates_for("once.example.com")) == [final]


def test_certificates_for_filters_by_validity_and_orders_newest_first(lab_ca: Issuer) -> None:
    old = certificate_store_der(
        der=issue(lab_ca, ["v.example.com"], not_before=T0 - timedelta(days=200)).certificate, source=SourceKind.CT
    )
    new = certificate_store_der(der=issue(lab_ca, ["v.example.com"], not_before=T0).certificate, source=SourceKind.CT)
    assert list(certificates_for("v.example.com")) == [new, old]
    assert list(certificates_for("v.example.com", valid_at=T0 + timedelta(days=1))) == [new]
    assert list(certificates_for("v.example.com", valid_at=T0 - timedelta(days=150))) == [old]
    assert list(certificates_for("v.example.com", valid_at=T0 + timedelta(days=365))) == []


def test_newest_certificate_for_name_prefers_the_final_certificate(lab_ca: Issuer) -> None:
    older = issue(lab_ca, ["n.example.com"], not_before=T0)
    newer = issue(lab_ca, ["n.example.com"], not_before=T0 + timedelta(days=60))
    certificate_store_der(der=older.certificate, source=SourceKind.SCAN, source_ref="n.example.com:443")
    assert newest_certificate_for_name("n.example.com").sha256 == parse_certificate(older.certificate).sha256
    pre = certificate_store_der(der=newer.precertificate, source=SourceKind.CT)
    assert newest_certificate_for_name("N.example.com") == pre
    assert newest_certificate_for_name("n.example.com", include_precertificates=False).not_before == T0
    final = certificate_store_der(der=newer.certificate, source=SourceKind.CT)
    assert newest_certificate_for_name("n.example.com") == final
    assert newest_certificate_for_name("n.example.com", valid_at=T0 + timedelta(days=1)).not_before == T0
    assert newest_certificate_for_name("other.example.com") is None


def test_issuances_are_counted_per_registered_domain_once_per_issuance(lab_ca: Issuer) -> None:
    now = T0 + timedelta(days=3)
    for i in range(3):
        issuance = issue(lab_ca, [f"h{i}.example.co.uk", "example.co.uk"], not_before=T0)
        certificate_store_der(der=issuance.precertificate, source=SourceKind.CT)
        certificate_store_der(der=issuance.certificate, source=SourceKind.CT)
    certificate_store_der(
        der=issue(lab_ca, ["old.example.co.uk"], not_before=T0 - timedelta(days=30)).certificate, source=SourceKind.CT
    )
    certificate_store_der(der=issue(lab_ca, ["other.co.uk"], not_before=T0).certificate, source=SourceKind.CT)
    assert certificate_issuances_count(registered_domain="example.co.uk", since=now - timedelta(days=7)) == 3
    assert rate_limit_usage(name="192.0.2.1", now=now).issued == 0


def test_lets_encrypts_rate_limit_counts_only_its_own_certificates(lab_root: Issuer, lab_ca: Issuer) -> None:
    now = T0 + timedelta(days=3)
    lets_encrypt = make_ca("Let's Encrypt Lab R11", parent=lab_root)
    for prefix, ca, count in (("le", lets_encrypt, 2), ("own", lab_ca, 4)):
        for i in range(count):
            issuance = issue(ca, [f"{prefix}{i}.example.co.uk"], not_before=T0)
            certificate_store_der(der=issuance.precertificate, source=SourceKind.CT)
            certificate_store_der(der=issuance.certificate, source=SourceKind.CT)
    since = now - timedelta(days=7)
    assert certificate_issuances_count(registered_domain="example.co.uk", since=since) == 6
    assert certificate_issuances_count(registered_domain="example.co.uk", since=since, lets_encrypt_only=True) == 2
    usage = rate_limit_usage(name="www.example.co.uk", now=now)
    assert (usage.registered_domain, usage.issued, usage.limit, usage.remaining) == ("example.co.uk", 2, 50, 48)


def test_lets_encrypts_duplicate_limit_counts_only_its_own_certificates(lab_root: Issuer, lab_ca: Issuer) -> None:
    lets_encrypt = make_ca("Let's Encrypt Lab R11", parent=lab_root)
    names = ["d.example.com", "www.d.example.com"]
    for ca in (lets_encrypt, lets_encrypt, lab_ca, lab_ca, lab_ca):
        certificate_store_der(der=issue(ca, names, not_before=T0).certificate, source=SourceKind.CT)
    since = T0 - timedelta(days=1)
    assert duplicate_issuances(registered_domain="example.com", since=since) == {frozenset(names): 5}
    only = duplicate_issuances(registered_domain="example.com", since=since, lets_encrypt_only=True)
    assert only == {frozenset(names): 2}


def test_duplicate_certificates_need_exactly_the_same_names(lab_ca: Issuer) -> None:
    for _ in range(2):
        issuance = issue(lab_ca, ["d.example.com", "www.d.example.com"], not_before=T0)
        certificate_store_der(der=issuance.precertificate, source=SourceKind.CT)
        certificate_store_der(der=issuance.certificate, source=SourceKind.CT)
    certificate_store_der(der=issue(lab_ca, ["d.example.com"], not_before=T0).certificate, source=SourceKind.CT)
    since = T0 - timedelta(days=1)
    assert certificate_duplicates_count(names=["www.d.example.com", "D.example.com"], since=since) == 2
    assert certificate_duplicates_count(names=["d.example.com"], since=since) == 1


def test_renewal_is_due_by_fraction_of_the_lifetime(lab_ca: Issuer) -> None:
    short = certificate_store_der(
        der=issue(lab_ca, ["s.example.com"], not_before=T0, lifetime=timedelta(days=6)).certificate,
        source=SourceKind.UPLOAD,
    )
    long = certificate_store_der(
        der=issue(lab_ca, ["l.example.com"], not_before=T0, lifetime=timedelta(days=398)).certificate,
        source=SourceKind.UPLOAD,
    )
    one_day_left = T0 + timedelta(days=5)
    assert short.renewal_overdue(one_day_left)
    thirty_left = long.not_after - timedelta(days=30)
    assert long.renewal_due(thirty_left) and not long.renewal_overdue(thirty_left)
    assert long.days_left(thirty_left) == 30
    assert not long.renewal_due(T0 + timedelta(days=10))


def test_thinning_drops_the_der_of_long_expired_certificates_but_keeps_the_facts(lab_ca: Issuer) -> None:
    from certificates.services import certificates_thin

    old = certificate_store_der(
        der=issue(lab_ca, ["old.thin.example"], not_before=T0 - timedelta(days=600)).certificate,
        source=SourceKind.CT,
        source_ref="log:1",
    )
    fresh = certificate_store_der(
        der=issue(lab_ca, ["new.thin.example"], not_before=T0).certificate, source=SourceKind.CT
    )
    assert certificates_thin(now=T0, retention_days=400) == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.thinned and bytes(old.der) == b""
    assert not fresh.thinned and bytes(fresh.der)
    assert not old.sources.exists()
    assert list(certificates_for("old.thin.example")) == [old]
    assert certificates_thin(now=T0, retention_days=400) == 0
