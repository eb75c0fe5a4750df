"""Real-time matching of new certificates against every team's watched domains, in memory.

`certificates` knows nothing of teams: the app that owns watched domains (monitors) registers a
provider at start-up that answers "who watches which domain" and receives the names discovered
under them. The index is a dict from domain to watchers, so matching a certificate costs a few
dict look-ups per name (one per label), never a query.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from django.core.cache import cache

from events.services import NewEvent
from kcproto.names import ip_literal
from kcproto.x509 import ParsedCertificate

WATCH_VERSION_KEY = "certificates:watch-version"
# Even without a change signal the index is rebuilt this often (seconds).
INDEX_MAX_AGE = 300.0


@dataclass(frozen=True, slots=True)
class Watch:
    """One watched domain of one team, as the provider reports it."""

    watch_id: int
    team_id: int
    domain: str
    include_subdomains: bool = True


@dataclass
class Match:
    """A certificate that concerns a team: which of its watches matched and through which names."""

    team_id: int
    certificate: ParsedCertificate
    names_by_watch: dict[int, set[str]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return sorted({n for names in self.names_by_watch.values() for n in names})


class WatchProvider(Protocol):
    def watches(self) -> Iterable[Watch]: ...

    def hosts_discovered(self, matches: Sequence[Match], *, seen_at: datetime) -> None: ...

    def issuance_events(self, matches: Sequence[Match]) -> list[NewEvent]:
        """Extra events for matches the team did not expect (its issuance policy, CAA)."""
        ...


_providers: list[WatchProvider] = []


def register_watch_provider(provider: WatchProvider) -> None:
    """Called once by the app that owns watched domains (monitors) from its AppConfig.ready()."""
    if not any(type(p) is type(provider) for p in _providers):
        _providers.append(provider)


def providers() -> list[WatchProvider]:
    return list(_providers)


def watchers_changed() -> None:
    """Tell every process's matcher to rebuild its index (call after watching/unwatching)."""
    # A fresh token, not a counter: a counter that vanished with the cache could repeat a value.
    cache.set(WATCH_VERSION_KEY, uuid.uuid4().hex, None)


def _parent(name: str) -> str:
    return name.partition(".")[2]


class WatchIndex:
    """Watched domains by name, for exact, sub-domain and wildcard matching."""

    def __init__(self, watches: Iterable[Watch]) -> None:
        self.exact: dict[str, list[Watch]] = defaultdict(list)
        # Watches whose own name a wildcard "*.<parent>" would cover, by that parent.
        self.by_parent: dict[str, list[Watch]] = defaultdict(list)
        self.count = 0
        for w in watches:
            self.exact[w.domain].append(w)
            if not w.domain.startswith("*.") and ip_literal(w.domain) is None:
                self.by_parent[_parent(w.domain)].append(w)
            self.count += 1

    def watches_for(self, name: str) -> list[Watch]:
        """Every watch that certificate name `name` (maybe a wildcard) concerns."""
        found: list[Watch] = []
        if ip_literal(name) is not None:
            return list(self.exact.get(name, ()))
        if name.startswith("*."):
            base = name[2:]
            # "*.example.com" can serve any one-label name under example.com ...
            found.extend(self.by_parent.get(base, ()))
            found.extend(w for w in self.exact.get(base, ()) if w.include_subdomains)
            candidate = _parent(base)
        else:
            found.extend(self.exact.get(name, ()))
            candidate = _parent(name)
        # ... and anything under a watched domain concerns those who watch its sub-domains.
        while candidate:
            for w in self.exact.get(candidate, ()):
                if w.include_subdomains:
                    found.append(w)
            candidate = _parent(candidate)
        return found

    def match(self, certificates: Iterable[ParsedCertificate]) -> list[Match]:
        """One Match per (team, certificate) that concerns a team."""
        out: list[Match] = []
        for cert in certificates:
            if cert.is_ca:
                continue
            by_team: dict[int, Match] = {}
            for name in cert.all_names:
                for w in self.watches_for(name):
                    m = by_team.get(w.team_id)
                    if m is None:
                        m = by_team[w.team_id] = Match(team_id=w.team_id, certificate=cert)
                    m.names_by_watch.setdefault(w.watch_id, set()).add(name)
            out.extend(by_team.values())
        return out


class Matcher:
    """A process-wide WatchIndex, rebuilt when watches change (cache version) or grow old."""

    def __init__(self) -> None:
        self._index: WatchIndex | None = None
        self._version: object = None
        self._built_at = 0.0

    def index(self) -> WatchIndex:
        version = cache.get(WATCH_VERSION_KEY)
        stale = time.monotonic() - self._built_at > INDEX_MAX_AGE
        if self._index is None or version != self._version or stale:
            watches: list[Watch] = []
            for provider in _providers:
                watches.extend(provider.watches())
            self._index = WatchIndex(watches)
            self._version = version
            self._built_at = time.monotonic()
        return self._index

    def match(self, certificates: Iterable[ParsedCertificate]) -> list[Match]:
        return self.index().match(certificates)


matcher = Matcher()
