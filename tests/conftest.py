"""Shared fixtures: three people (as healthchecks' hc/test.py does), the TLS lab, slow tests.

- alice: owner of team A (her personal team)
- bob: member of team A (and owner of his own personal team)
- charlie: owner of team B
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from django.test import Client

from keychest.accounts.models import Membership, Role, Team, User
from keychest.accounts.services import personal_team_ensure
from lab.dns import LabDNS
from lab.tls import Lab

PASSWORD = "correct horse battery staple"
# Fixtures of real lab servers shared by several apps' tests.
pytest_plugins = ["pytester", "tests.rdap_lab", "tests.skip_policy"]


def make_user(email: str, password: str = PASSWORD, *, verified: bool = True) -> User:
    """A user with a personal team and a (verified) primary email, as signup would leave them."""
    user = User.objects.create_user(email=email, password=password)
    EmailAddress.objects.create(user=user, email=email, verified=verified, primary=True)
    personal_team_ensure(user=user)
    return user


def cache_clear(cache: BaseCache) -> None:
    """Empty this process's cache. On Redis only the keys under its own prefix (settings_test
    gives each process one): Django's clear() is FLUSHDB, which would empty the cache of every
    other xdist worker and every other run sharing the Redis database, mid-test."""
    if not isinstance(cache, RedisCache):
        cache.clear()
        return
    backend: Any = cache._cache
    client = backend.get_client(write=True)
    keys = list(client.scan_iter(match=f"{cache.key_prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Rate-limit counters and cached values never leak from one test into the next."""
    from django.core.cache import caches

    from api.access import LEASES
    from api.keycache import KEY_CACHE

    cache_clear(caches["default"])
    KEY_CACHE.clear()  # a rolled-back test's keys must not be remembered by the next test
    LEASES.clear()  # nor hits leased from counters the clear just removed


@dataclass
class People:
    alice: User
    bob: User
    charlie: User
    team_a: Team
    team_b: Team


@pytest.fixture
def people(db: None) -> People:
    alice = make_user("alice@example.org")
    bob = make_user("bob@example.org")
    charlie = make_user("charlie@example.org")
    team_a = personal_team_ensure(user=alice)
    team_a.name = "Team A"
    team_a.save(update_fields=["name"])
    team_b = personal_team_ensure(user=charlie)
    team_b.name = "Team B"
    team_b.save(update_fields=["name"])
    Membership.objects.create(team=team_a, user=bob, role=Role.MEMBER)
    return People(alice=alice, bob=bob, charlie=charlie, team_a=team_a, team_b=team_b)


def _client_for(user: User, team: Team | None = None) -> Client:
    from keychest.accounts.middleware import SESSION_KEY

    client = Client()
    client.force_login(user)
    if team is not None:
        session = client.session
        session[SESSION_KEY] = str(team.uuid)
        session.save()
    return client


@pytest.fixture
def alice_client(people: People) -> Client:
    return _client_for(people.alice, people.team_a)


@pytest.fixture
def bob_client(people: People) -> Client:
    return _client_for(people.bob, people.team_a)


@pytest.fixture
def charlie_client(people: People) -> Client:
    return _client_for(people.charlie, people.team_b)


@pytest.fixture
def client_for():
    return _client_for


# --- The TLS lab: one private PKI, TLS servers and a DNS server per test session (lazy) --------

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
