"""RDAP fetching (monitors/rdap.py) against the real lab RDAP server, with every fault it has."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from lab.rdap.server import LocalRDAP
from monitors import rdap


@pytest.fixture
def lab():
    with LocalRDAP() as server:
        yield server


def ask(lab: LocalRDAP, domain: str, **kwargs) -> rdap.RdapRecord:
    kwargs.setdefault("allow_private", True)
    kwargs.setdefault("timeout", 5.0)
    return rdap.query_domain(lab.url, domain, **kwargs)


def failure(lab: LocalRDAP, domain: str, **kwargs) -> rdap.RdapError:
    with pytest.raises(rdap.RdapError) as caught:
        ask(lab, domain, **kwargs)
    return caught.value


def test_it_reads_expiry_registration_last_changed_registrar_and_statuses(lab) -> None:
    expires = datetime(2027, 5, 4, 3, 2, 1, tzinfo=UTC)
    lab.register("alpha.test", expires_at=expires, registrar="Lab Names GmbH")
    record = ask(lab, "alpha.test")
    assert record.expires_at == expires
    assert record.registered_at == expires - timedelta(days=3 * 365)
    assert record.changed_at == expires - timedelta(days=365)
    assert record.registrar == "Lab Names GmbH"
    assert record.statuses == ["client transfer prohibited", "active"]
    assert lab.requests == ["/domain/alpha.test"]


def test_not_found_is_its_own_outcome(lab) -> None:
    lab.faults.not_found.add("gone.test")
    error = failure(lab, "gone.test")
    assert (error.code, error.status) == (rdap.NOT_FOUND, 404)


def test_429_says_rate_limited_with_the_servers_retry_after(lab) -> None:
    lab.faults.status_429, lab.faults.retry_after = 1, 120
    error = failure(lab, "alpha.test")
    assert error.code == rdap.RATE_LIMITED and error.retry_after == 120
    assert ask(lab, "alpha.test").expires_at is not None  # only the next request was throttled


def test_5xx_is_a_server_error(lab) -> None:
    lab.faults.status_500 = 1
    assert failure(lab, "alpha.test").code == rdap.SERVER_ERROR
    assert rdap.SERVER_ERROR in rdap.SERVER_TROUBLE and rdap.RATE_LIMITED in rdap.SERVER_TROUBLE


@pytest.mark.parametrize("fault", ["malformed", "not_a_domain", "bad_date"])
def test_malformed_answers_are_refused_not_crashed_on(lab, fault) -> None:
    setattr(lab.faults, fault, 1)
    assert failure(lab, "alpha.test").code == rdap.MALFORMED


def test_an_oversized_body_is_cut_off_at_the_cap(lab) -> None:
    lab.faults.oversized = 1
    error = failure(lab, "alpha.test", max_bytes=64 * 1024)
    assert error.code == rdap.TOO_LARGE


def test_a_slow_server_hits_the_overall_deadline(lab) -> None:
    lab.faults.slow_seconds = 3.0
    started = time.monotonic()
    error = failure(lab, "alpha.test", timeout=0.6)
    assert error.code == rdap.TIMEOUT
    assert time.monotonic() - started < 2.0


def test_private_addresses_are_refused_before_any_request(lab) -> None:
    error = failure(lab, "alpha.test", allow_private=False)
    assert error.code == rdap.REFUSED and "loopback" in error.message
    assert lab.requests == []


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    error = None
    try:
        rdap.query_domain("http://localhost:9/", "alpha.test", allow_private=False, timeout=2)
    except rdap.RdapError as caught:
        error = caught
    assert error is not None and error.code == rdap.REFUSED


def test_a_closed_port_is_a_connection_error() -> None:
    with LocalRDAP() as gone:
        url = gone.url
    error = None
    try:
        rdap.query_domain(url, "alpha.test", allow_private=True, timeout=2)
    except rdap.RdapError as caught:
        error = caught
    assert error is not None and error.code == rdap.CONNECTION


def test_bootstrap_longest_suffix_wins_and_https_comes_first() -> None:
    doc = {
        "services": [
            [["uk"], ["http://plain.example/uk/", "https://rdap.example/uk"]],
            [["co.uk"], ["https://rdap.example/co.uk/"]],
            [["broken"], ["ftp://nope/"]],
        ]
    }
    bootstrap = rdap.parse_bootstrap(json.dumps(doc))
    assert bootstrap.base_urls("example.uk") == ("https://rdap.example/uk/", "http://plain.example/uk/")
    assert bootstrap.server_for("shop.example.co.uk") == "https://rdap.example/co.uk/"
    assert bootstrap.server_for("x.broken") == "" and bootstrap.server_for("example.nope") == ""


def test_the_bundled_bootstrap_knows_the_big_tlds() -> None:
    bootstrap = rdap.load_bootstrap(None, allow_private=False)
    assert bootstrap.server_for("example.com") == "https://rdap.verisign.com/com/v1/"
    assert bootstrap.server_for("example.org").startswith("https://")


@pytest.mark.parametrize("text", ["not json", "[]", '{"services": [["com"]]}'])
def test_a_broken_bootstrap_is_an_error(text) -> None:
    with pytest.raises(rdap.BootstrapError):
        rdap.parse_bootstrap(text)


def test_the_bootstrap_can_come_from_a_path_or_a_guarded_url(lab, tmp_path) -> None:
    path = lab.write_bootstrap(tmp_path / "dns.json")
    assert rdap.load_bootstrap(str(path), allow_private=False).server_for("alpha.test") == lab.url
    with pytest.raises(rdap.BootstrapError, match="non-public"):
        rdap.load_bootstrap(lab.url + "dns.json", allow_private=False)
    assert rdap.load_bootstrap(lab.url + "dns.json", allow_private=True).server_for("www.x.example") == lab.url
    with pytest.raises(rdap.BootstrapError, match="cannot read"):
        rdap.load_bootstrap(str(tmp_path / "missing.json"), allow_private=False)


def test_redirects_are_followed_only_to_http_urls_and_checked_again(lab) -> None:
    lab.faults.redirect_to = lab.url + "domain/{domain}"
    assert ask(lab, "alpha.test").expires_at is not None
    assert lab.requests == ["/domain/alpha.test", "/domain/alpha.test"]
    lab.faults.redirect_to = "file:///etc/passwd"
    assert failure(lab, "alpha.test").code == rdap.REFUSED
    lab.faults.redirect_to = "http://localhost:1/{domain}"
    error = failure(lab, "alpha.test", allow_private=True)
    assert error.code == rdap.CONNECTION  # followed (private allowed), and the port is closed


def test_https_verifies_the_rdap_servers_certificate_by_name(tmp_path) -> None:
    import ssl

    from lab.pki import CA

    root = CA("RDAP Lab Root")
    cert, key = root.issue(["localhost"]).write(tmp_path, "rdap")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    with LocalRDAP(tls=server_context) as lab:
        assert lab.url.startswith("https://localhost:")
        trusting = ssl.create_default_context(cadata=root.pem)
        record = rdap.query_domain(lab.url, "alpha.test", allow_private=True, timeout=5, ssl_context=trusting)
        assert record.expires_at is not None
        # The lab root is not in the system trust store: the certificate is refused.
        error = None
        try:
            rdap.query_domain(lab.url, "alpha.test", allow_private=True, timeout=5)
        except rdap.RdapError as caught:
            error = caught
        assert error is not None and error.code == rdap.CONNECTION and "TLS" in error.message
        assert lab.requests == ["/domain/alpha.test"]
