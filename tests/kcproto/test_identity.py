"""Host names as clients match them (RFC 9525), and the same answers as cryptography's verifier."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import subprocess
from functools import cache
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcproto.identity import Presented, matches, mismatch_reason


def san(*names: str, ips: tuple[str, ...] = ()) -> Presented:
    return Presented(dns=names, ips=ips, has_san=True)


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("www.example.com", "www.example.com", True),
        ("WWW.Example.COM", "www.example.com", True),  # ASCII case-insensitive
        ("www.example.com.", "www.example.com", False),  # a trailing dot is not stripped
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "example.com", False),  # one label, not zero
        ("*.example.com", "a.b.example.com", False),  # one label, not two
        ("*.com", "example.com", False),  # at least two labels under a wildcard
        ("w*.example.com", "www.example.com", False),  # partial wildcards match nothing
        ("*w.example.com", "www.example.com", False),
        ("*.*.example.com", "a.b.example.com", False),
        ("*.example.com", "xn--bcher-kva.example.com", True),  # IDN: compared as A-labels
        ("bücher.example", "xn--bcher-kva.example", False),  # a U-label in a dNSName is invalid
        ("xn--bcher-kva.example", "xn--bcher-kva.example", True),
        ("1.2.3.4", "1.2.3.4", False),  # an address is matched only by an iPAddress entry
        ("*.2.3.4", "1.2.3.4", False),
    ],
)
def test_dns_names_match_as_clients_match_them(pattern: str, host: str, expected: bool) -> None:
    assert matches(host, san(pattern)) is expected


def test_ip_addresses_match_ip_entries_only() -> None:
    assert matches("192.0.2.7", san(ips=("192.0.2.7",)))
    assert matches("2001:db8::1", san(ips=("2001:db8::1",)))
    assert not matches("192.0.2.8", san("192.0.2.8", ips=("192.0.2.7",)))
    assert not matches("www.example.com", san(ips=("192.0.2.7",)))


def test_a_certificate_without_a_san_names_no_host_and_says_why() -> None:
    cn_only = Presented(common_names=("www.example.com",))
    assert not matches("www.example.com", cn_only)
    reason = mismatch_reason("www.example.com", cn_only)
    assert "no subjectAltName" in reason and "www.example.com" in reason and "2017" in reason


@pytest.mark.parametrize(
    ("presented", "host", "words"),
    [
        (san("www.example.com."), "www.example.com", "trailing dot"),
        (san("*.example.com"), "a.b.example.com", "one label only"),
        (san("w*.example.com"), "www.example.com", "whole left-most label"),
        (san("192.0.2.1"), "192.0.2.1", "as a DNS name"),
        (san("other.example"), "www.example.com", "other.example, not www.example.com"),
    ],
)
def test_the_reason_is_spelled_out(presented: Presented, host: str, words: str) -> None:
    assert words in mismatch_reason(host, presented)
    named = san(ips=(host,)) if host[0].isdigit() else san(host)
    assert mismatch_reason(host, named) == ""


# --- agreement with cryptography's X.509 verifier (code nobody here wrote) ----------------------
NOW = dt.datetime.now(dt.UTC)


@cache
def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Identity Test Root")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@cache
def _leaf_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _leaf(dns: list[str], ips: list[str]) -> x509.Certificate:
    key, ca = _ca()
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(ca.subject)
        .public_key(_leaf_key().public_key())
        .serial_number(2)
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _cryptography_says(host: str, leaf: x509.Certificate) -> bool:
    address = None
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(host)
    subject = x509.IPAddress(address) if address is not None else x509.DNSName(host)
    verifier = (
        verification.PolicyBuilder().store(verification.Store([_ca()[1]])).time(NOW).build_server_verifier(subject)
    )
    try:
        verifier.verify(leaf, [])
    except verification.VerificationError:
        return False
    return True


LABELS = ["a", "b", "www", "xn--bcher-kva", "example", "com", "test"]
label = st.sampled_from(LABELS)
hosts = st.lists(label, min_size=2, max_size=4).map(".".join) | st.sampled_from(["192.0.2.1", "2001:db8::1"])
presented_name = st.one_of(
    st.lists(label, min_size=1, max_size=4).map(".".join),
    st.lists(label, min_size=1, max_size=3).map(lambda ls: "*." + ".".join(ls)),
    st.lists(label, min_size=2, max_size=3).map(lambda ls: "w*." + ".".join(ls)),
    st.lists(label, min_size=2, max_size=3).map(lambda ls: ".".join(ls).upper()),
    st.lists(label, min_size=2, max_size=3).map(lambda ls: ".".join(ls) + "."),
    st.sampled_from(["192.0.2.1", "*.example.com", "*"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    host=hosts,
    dns=st.lists(presented_name, min_size=0, max_size=3),
    ips=st.lists(st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8::1"]), max_size=2),
)
def test_our_matching_agrees_with_cryptographys_verifier(host: str, dns: list[str], ips: list[str]) -> None:
    if not dns and not ips:
        return  # an empty SAN cannot be encoded
    ours = matches(host, Presented(dns=tuple(dns), ips=tuple(ips), has_san=True))
    # One known difference: cryptography lets "*.com" cover "www.com"; OpenSSL and browsers do not
    # (a wildcard needs two labels after it: test_a_wildcard_over_one_label_matches_nothing). Such
    # names match nothing for us, so cryptography is asked about the certificate without them.
    kept = [name for name in dns if not _wildcard_over_one_label(name)]
    if not kept and not ips:
        assert not ours
        return
    assert ours == _cryptography_says(host, _leaf(kept, ips))


def _wildcard_over_one_label(name: str) -> bool:
    return name.startswith("*.") and "." not in name[2:].rstrip(".")


@pytest.mark.parametrize(("host", "name"), [("www.com", "*.com"), ("a.a", "*.a")])
def test_a_wildcard_over_one_label_matches_nothing(host: str, name: str, tmp_path: Path) -> None:
    """As OpenSSL's host check (and browsers) decide, not as cryptography's verifier does."""
    leaf = _leaf([name, "*.b.example"], [])
    pem = tmp_path / "leaf.pem"
    pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    openssl = subprocess.run(
        ["openssl", "x509", "-in", str(pem), "-noout", "-checkhost", host], capture_output=True, text=True, check=True
    )
    assert "does NOT match" in openssl.stdout
    assert _cryptography_says(host, leaf)  # the difference this test pins
    assert not matches(host, Presented(dns=(name, "*.b.example"), has_san=True))
    assert matches("a.b.example", Presented(dns=(name, "*.b.example"), has_san=True))
