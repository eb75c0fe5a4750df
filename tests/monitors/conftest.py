"""The lab for scanner tests: one private PKI, TLS servers and a DNS server per test session."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from lab.dns import LabDNS
from lab.tls import Lab

_names = itertools.count(1)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    with Lab() as running:
        yield running


@pytest.fixture(scope="session")
def lab_dns() -> Iterator[LabDNS]:
    with LabDNS() as dns:
        yield dns


@pytest.fixture
def lab_settings(settings, lab_dns: LabDNS):  # type: ignore[no-untyped-def]
    """Scans may reach 127.0.0.x and ask the lab DNS server; short deadlines keep tests quick."""
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
    settings.KEYCHEST_DNS_NAMESERVERS = [lab_dns.nameserver]
    settings.KEYCHEST_SCAN_DEADLINE = 2.0
    settings.KEYCHEST_SCAN_CONNECT_TIMEOUT = 1.0
    settings.KEYCHEST_DNS_TIMEOUT = 1.0
    return settings


@pytest.fixture
def lab_name(lab_dns: LabDNS):  # type: ignore[no-untyped-def]
    """A fresh lab host name pointing at the given addresses: `lab_name("valid", "127.0.0.1")`."""

    def make(label: str, *addresses: str) -> str:
        name = f"{label}-{next(_names)}.keychest.test"
        lab_dns.set(name, list(addresses or ["127.0.0.1"]))
        return name

    return make
