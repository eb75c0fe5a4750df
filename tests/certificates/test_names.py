from __future__ import annotations

import pytest

from kcproto.names import (
    InvalidName,
    is_public_suffix,
    name_matches,
    normalise_certificate_name,
    normalise_name,
    parent_wildcard,
    registered_domain,
    reversed_name,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", "example.com"),
        ("www.example.com.", "www.example.com"),
        ("  api.example.org  ", "api.example.org"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("*.Example.com", "*.example.com"),
        ("*.bücher.example", "*.xn--bcher-kva.example"),
        ("straße.de", "xn--strae-oqa.de"),
        ("192.0.2.1", "192.0.2.1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("2001:0db8:0000::0001", "2001:db8::1"),
    ],
)
def test_it_normalises_names(raw: str, expected: str) -> None:
    assert normalise_name(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        ".",
        "a..b",
        "www.*.example.com",
        "w*.example.com",
        "*.com",
        "*",
        "-bad.example.com",
        "bad-.example.com",
        "ab--cd.example.com",
        "xn--zz.example",
        "a" * 64 + ".example.com",
        ".".join(["abcdefghi"] * 26),
        "exa mple.com",
        "1.2.3",
        "under_score.example.com",
    ],
)
def test_it_rejects_invalid_names(raw: str) -> None:
    with pytest.raises(InvalidName):
        normalise_name(raw)


def test_certificate_names_tolerate_underscores_but_not_garbage() -> None:
    assert normalise_certificate_name("_dmarc.Example.com") == "_dmarc.example.com"
    assert normalise_certificate_name("*.Example.com.") == "*.example.com"
    assert normalise_certificate_name("not a name") is None
    assert normalise_certificate_name("Intranet") == "intranet"
    assert normalise_certificate_name("<script>.example.com") is None


def test_reversed_name_puts_the_top_level_first() -> None:
    assert reversed_name("www.example.com") == "com.example.www"
    assert reversed_name("*.example.com") == "com.example.*"
    assert reversed_name("192.0.2.1") == "192.0.2.1"


@pytest.mark.parametrize(
    "name",
    [
        "www.example.com",
        "*.example.com",
        "xn--bcher-kva.example",
        "a-b.example-1",
        "host.example.1",
        "192.0.2.1",
        "2001:db8::1",
        "::ffff:192.0.2.1",
        "[2001:db8::1]",
        "[192.0.2.1]",
        " 192.0.2.1",
        "192.0.2.1 ",
        "192.0.2.1\n",
        "fe80::1%eth0",
        "ab:cd.example",
        "example.",
        "",
        "ünïcode.bücher",
        "١٢٣.example.٣",
    ],
)
def test_ip_literal_skips_parsing_only_where_it_cannot_match(name: str) -> None:
    # The early "ends in a letter, no colon" answer must be what the full check answers.
    import ipaddress

    from kcproto.names import ip_literal

    candidate = name.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    try:
        expected: str | None = ipaddress.ip_address(candidate).compressed
    except ValueError:
        expected = None
    assert ip_literal(name) == expected
    assert reversed_name(name) == (name if expected is not None else ".".join(reversed(name.split("."))))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("www.example.co.uk", "example.co.uk"),
        ("example.com", "example.com"),
        ("a.b.c.example.com", "example.com"),
        ("*.example.org", "example.org"),
        ("alice.github.io", "alice.github.io"),
        ("co.uk", ""),
        ("192.0.2.1", ""),
    ],
)
def test_registered_domain_follows_the_public_suffix_list(name: str, expected: str) -> None:
    assert registered_domain(name) == expected


def test_a_wildcard_matches_exactly_one_label() -> None:
    assert name_matches("*.example.com", "www.example.com")
    assert not name_matches("*.example.com", "example.com")
    assert not name_matches("*.example.com", "a.b.example.com")
    assert name_matches("www.example.com", "www.example.com")
    assert parent_wildcard("www.example.com") == "*.example.com"
    assert parent_wildcard("example.com") is None


def test_the_registered_domain_cache_by_suffix_agrees_with_the_public_suffix_list() -> None:
    # registered_domain() asks the PSL once per tail that decides the answer ("example.com" for
    # every name under it); check that against the package's own answer for names around every
    # rule: exact, wildcard and exception rules, one to four labels deeper.
    from publicsuffixlist import PublicSuffixList

    from kcproto.names import _psl_key, _psl_rules

    psl = PublicSuffixList()
    rules = _psl_rules()
    assert rules is not None, "publicsuffixlist changed how it keeps its rules: the cache by suffix is off"
    hosts = {"www.example.com", "a.b.c.d.e.f.g.h.example.co.uk", "x.unknowntld", "unknowntld", "a.b.unknowntld"}
    for rule in rules[0]:
        base = rule.lstrip("!").removeprefix("*.")
        for prefix in ("", "w.", "v.w.", "u.v.w.", "t.u.v.w."):
            hosts.add(prefix + base)
    for host in sorted(hosts):
        assert registered_domain(host) == (psl.privatesuffix(host) or ""), host
    assert _psl_key("www.shop.example.com") == "example.com"
    assert _psl_key("a.b.foo.kobe.jp") == "b.foo.kobe.jp"  # under the wildcard rule *.kobe.jp


@pytest.mark.parametrize("raw", ["a\n.example.com", "www\n.example.com", "www.example\n.com", "a_b\n.example.com"])
def test_a_newline_inside_a_name_is_refused(raw: str) -> None:
    # A `$`-anchored label pattern matched "a\n": names with line breaks reached storage.
    with pytest.raises(InvalidName):
        normalise_name(raw)
    assert normalise_certificate_name(raw) is None


@pytest.mark.parametrize(
    ("name", "public"),
    [
        ("com", True),
        ("co.uk", True),
        ("github.io", True),  # the list's private section: every user's pages are under it
        ("kobe.jp", True),
        ("city.kobe.jp", False),  # an exception rule
        ("example", True),  # an unknown top-level label: the default rule
        ("example.com", False),
        ("www.example.co.uk", False),
        ("*.example.com", False),
        ("192.0.2.1", False),
    ],
)
def test_public_suffixes_are_recognised_from_the_bundled_list(name: str, public: bool) -> None:
    assert is_public_suffix(name) is public
