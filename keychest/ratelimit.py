"""Atomic rate-limit counters (fixed windows) on the shared cache.

With REDIS_URL set the counters live in Redis, whose INCR is atomic across every web process
and worker; without it they live in the process-local cache (fine for `make run`'s single
web process). Use for what can be abused: claims, signups, spot checks.

`LeasedCounters` counts the same windows for the API, whose every request is counted: a process
takes several hits of a window from Redis at once and spends them locally (see there).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache


@dataclass(frozen=True)
class Limit:
    """At most `count` hits per `seconds` for one key within a named scope."""

    scope: str
    count: int
    seconds: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    used: int
    limit: int
    retry_after: int


def _window_key(limit: Limit, key: str, now: float) -> tuple[str, int]:
    window = int(now // limit.seconds)
    remaining = limit.seconds - int(now % limit.seconds)
    return f"rl:{limit.scope}:{window}:{key}", remaining


def hit(limit: Limit, key: str, *, now: float | None = None) -> Verdict:
    """Count one hit and say whether it is within the limit (the hit counts either way)."""
    now = time.time() if now is None else now
    cache_key, remaining = _window_key(limit, key, now)
    # add() creates the counter only if absent, so concurrent first hits do not reset it.
    cache.add(cache_key, 0, timeout=remaining + 1)
    try:
        used = cache.incr(cache_key)
    except ValueError:  # expired between add() and incr()
        cache.add(cache_key, 1, timeout=remaining + 1)
        used = 1
    return Verdict(allowed=used <= limit.count, used=used, limit=limit.count, retry_after=remaining)


def peek(limit: Limit, key: str, *, now: float | None = None) -> int:
    """How many hits the current window holds, without counting one."""
    now = time.time() if now is None else now
    cache_key, _ = _window_key(limit, key, now)
    return int(cache.get(cache_key, 0))


def client_ip(request: object) -> str:
    """The client address; behind a trusted proxy (KEYCHEST_BEHIND_PROXY) the last X-Forwarded-For hop."""
    from django.conf import settings

    meta = getattr(request, "META", {})
    if settings.SECURE_PROXY_SSL_HEADER and meta.get("HTTP_X_FORWARDED_FOR"):
        return meta["HTTP_X_FORWARDED_FOR"].split(",")[-1].strip()
    return meta.get("REMOTE_ADDR", "") or "unknown"


def client_network(request: object) -> str:
    """The key to rate-limit a client by: its IPv4 address, or the /64 of its IPv6 address.

    One IPv6 subscriber is given a whole /64 (SLAAC, RFC 6177 and most ISPs), so a per-address
    limit would let it rotate through 2**64 addresses; an IPv4-mapped address counts as IPv4."""
    address = client_ip(request)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def redis_client() -> Any | None:
    """The shared cache's Redis client, or None when the cache is per process.

    Django's Redis cache builds a new client object (cheap to use, not to build) on every call;
    the API needs one per request, so it is kept on the cache's client (one per thread).
    """
    backend: Any = getattr(cache, "_cache", None)
    if getattr(backend, "get_client", None) is None:
        return None
    client = getattr(backend, "_keychest_client", None)
    if client is None:
        client = backend.get_client(write=True)
        backend._keychest_client = client
    return client


# Per counter (KEYS[i]; ARGV: seconds to keep it, the limit, the largest lease): create the window
# if absent, then grant up to 1/16 of what is left (at least 1, at most the largest lease) and
# add the grant to the count; with nothing left, count the refused hit and grant 0. Returns
# [grant, count after] per counter.
_LEASE = """
local out = {}
for i = 1, #KEYS do
  local ttl, limit, most = ARGV[3 * i - 2], tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  redis.call('SET', KEYS[i], 0, 'EX', ttl, 'NX')
  local left = limit - tonumber(redis.call('GET', KEYS[i]))
  local grant = 0
  if left > 0 then grant = math.max(1, math.min(most, math.floor(left / 16))) end
  out[2 * i - 1] = grant
  out[2 * i] = redis.call('INCRBY', KEYS[i], math.max(grant, 1))
end
return out
"""


_SPENT = -1  # hits left in a window that refused this process: none until it ends


class LeasedCounters:
    """Fixed-window limits whose hits a process takes from Redis a few at a time.

    Counting every API request in Redis was a round trip per request. Instead a process asks for
    a *lease* of hits (up to `lease` at once, and never more than 1/16 of what is left of the
    window, so the last hits are handed out one by one) and spends it locally. Redis adds every
    lease to the window's count before granting it, so across all processes no more than the
    limit is ever allowed; what a process leased and did not spend is lost when the window ends,
    so a client spread over several processes may be refused a few hits early. Once Redis refuses
    a window, the process refuses it locally until the window ends (a fixed window's count never
    goes down), so a client that keeps calling past its limit costs no round trips either.
    `lease=1` asks Redis for every allowed hit. Without Redis, `hit` counts each hit in the
    per-process cache. The Redis keys are those of `hit` (so `peek` reads them); they count
    leased hits as used, and refused hits only until the process knows the window is spent.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left: dict[str, tuple[int, float]] = {}  # Redis key -> (hits left, window end)
        self._sweep_at = 0.0

    def take(self, limits: list[tuple[Limit, str]], *, lease: int, now: float | None = None) -> int:
        """Count one hit on each limit; the seconds to wait, 0 when every limit allowed it."""
        now = time.time() if now is None else now
        client = redis_client()
        if client is None:
            verdicts = [hit(limit, key, now=now) for limit, key in limits]
            return max((v.retry_after for v in verdicts if not v.allowed), default=0)
        wanted: list[tuple[Limit, str, int]] = []
        refused = 0
        with self._lock:
            if now >= self._sweep_at:
                self._sweep(now)
            for limit, key in limits:
                full_key, remaining = _window_key(limit, key, now)
                full_key = cache.make_and_validate_key(full_key)
                left, ends = self._left.get(full_key, (0, 0.0))
                if left > 0:
                    self._left[full_key] = (left - 1, ends)
                elif left == _SPENT:
                    refused = max(refused, remaining)
                else:
                    wanted.append((limit, full_key, remaining))
        if not wanted:
            return refused
        script = getattr(client, "_keychest_lease", None)
        if script is None:  # one per client (and so per thread), loaded into Redis on first use
            script = client._keychest_lease = client.register_script(_LEASE)
        args: list[int] = []
        for limit, _, remaining in wanted:
            args += [remaining + 1, limit.count, max(1, lease)]
        out = script(keys=[full_key for _, full_key, _ in wanted], args=args)
        with self._lock:
            for i, (_, full_key, remaining) in enumerate(wanted):
                grant = int(out[2 * i])
                if grant == 0:
                    # A window's count never goes down: refused now, refused until it ends.
                    refused = max(refused, remaining)
                    self._left[full_key] = (_SPENT, now + remaining)
                elif grant > 1:
                    left, _ = self._left.get(full_key, (0, 0.0))
                    self._left[full_key] = (max(left, 0) + grant - 1, now + remaining)
        return refused

    def _sweep(self, now: float) -> None:
        """Forget the leases of windows that have ended."""
        self._left = {k: v for k, v in self._left.items() if v[1] > now}
        self._sweep_at = min((ends for _, ends in self._left.values()), default=now + 1.0)

    def clear(self) -> None:
        with self._lock:
            self._left.clear()
            self._sweep_at = 0.0
