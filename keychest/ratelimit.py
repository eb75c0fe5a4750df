"""Atomic rate-limit counters (fixed windows) on the shared cache.

With REDIS_URL set the counters live in Redis, whose INCR is atomic across every web process
and worker; without it they live in the process-local cache (fine for `make run`'s single
web process). Use for what can be abused: claims, signups, spot checks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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
