from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certificates.matching import Watch, WatchIndex
from kcproto.x509 import ParsedCertificate

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _cert(*names: str, is_ca: bool = False) -> ParsedCertificate:
    return ParsedCertificate(
        der=b"",
        sha256="00" * 32,
        serial="1",
        issuer="CN=x",
        subject="CN=x",
        issuer_key_id="",
        subject_key_id="",
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
        key_type="ec",
        key_size=256,
        signature_algorithm="ecdsa-with-SHA256",
        is_ca=is_ca,
        is_precertificate=False,
        issuance_key="ab" * 32,
        names=tuple(n for n in names if ":" not in n and not n[0].isdigit()),
        ip_addresses=tuple(n for n in names if ":" in n or n[0].isdigit()),
    )


INDEX = WatchIndex(
    [
        Watch(1, team_id=10, domain="example.com"),
        Watch(2, team_id=20, domain="example.com"),
        Watch(3, team_id=10, domain="shop.example.net", include_subdomains=False),
        Watch(4, team_id=30, domain="deep.a.example.org"),
        Watch(5, team_id=40, domain="192.0.2.1", include_subdomains=False),
    ]
)


def _teams(*names: str) -> set[int]:
    return {m.team_id for m in INDEX.match([_cert(*names)])}


def test_a_watched_domain_matches_itself_and_its_subdomains() -> None:
    assert _teams("example.com") == {10, 20}
    assert _teams("a.b.example.com") == {10, 20}


def test_lookalikes_do_not_match() -> None:
    assert _teams("notexample.com") == set()
    assert _teams("example.com.evil.net") == set()
    assert _teams("example.co") == set()


def test_an_exact_watch_ignores_its_subdomains_but_not_a_covering_wildcard() -> None:
    assert _teams("shop.example.net") == {10}
    assert _teams("x.shop.example.net") == set()
    assert _teams("*.example.net") == {10}
    assert _teams("*.shop.example.net") == set()


def test_a_wildcard_under_a_watched_domain_matches() -> None:
    assert _teams("*.example.com") == {10, 20}
    assert _teams("*.a.example.org") == {30}
    assert _teams("*.example.org") == set()


def test_ip_addresses_match_only_exactly() -> None:
    assert _teams("192.0.2.1") == {40}
    assert _teams("192.0.2.10") == set()


def test_one_match_per_team_with_every_matching_name() -> None:
    matches = INDEX.match([_cert("www.example.com", "api.example.com", "shop.example.net", "other.org")])
    by_team = {m.team_id: m for m in matches}
    assert set(by_team) == {10, 20}
    assert by_team[10].names == ["api.example.com", "shop.example.net", "www.example.com"]
    assert by_team[20].names == ["api.example.com", "www.example.com"]


def test_ca_certificates_are_not_matched() -> None:
    assert INDEX.match([_cert("example.com", is_ca=True)]) == []
