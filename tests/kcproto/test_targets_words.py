"""Targets as people type them: plain refusals, URLs read as hosts, local-only names known
(issue 14 items 3 and 9). Pure: no database."""

from __future__ import annotations

import pytest

from kcproto.names import InvalidName, normalise_name
from kcproto.targets import InvalidTarget, domain_from_input, non_public_reason, parse_target, url_host


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("my server", "“my server” has a space in it; a host name has none"),
        ("shop!.example.com", "contains “!”; a host name holds only letters, digits, hyphens and dots"),
        ("_dmarc.example.com", "contains “_”"),
    ],
)
def test_a_bad_name_is_refused_in_words_not_codepoints(typed: str, words: str) -> None:
    with pytest.raises(InvalidTarget) as caught:
        parse_target(typed)
    assert words in str(caught.value) and "Codepoint" not in str(caught.value)
    with pytest.raises(InvalidName) as named:
        normalise_name(typed)
    assert words in str(named.value) and "IDNA" not in str(named.value)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("api.localhost", "loopback"),
        ("10.0.0.5", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "unique_local"),
        ("169.254.169.254", "metadata"),
        ("printer.local", "local_name"),
        ("db.corp.internal", "local_name"),
        ("nas.home.arpa", "local_name"),
        ("example.com", None),
        ("93.184.215.14", None),
        ("localhost.example.com", None),
    ],
)
def test_non_public_targets_are_known_without_dns(host: str, reason: str | None) -> None:
    assert non_public_reason(host) == reason


def test_urls_are_read_as_hosts_by_servers_and_domains_alike() -> None:
    assert parse_target("https://x.test/path?q=1") == ("x.test", 443)
    assert url_host("https://x.test:8443/path#f") == "x.test:8443"
    assert domain_from_input("https://x.test/path") == "x.test"
    assert domain_from_input("x.test:443") == "x.test"
    assert domain_from_input("example.org") == "example.org"
