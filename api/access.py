"""Who is calling the API, for which team, and what they may do.

A caller is a signed-in person (session, CSRF-checked, acting in their current team) or an API
key (acting for its user in its one team, within its scopes and never beyond the user's role).
Keys come as a Bearer token, as `api_key` in the query or JSON/form body, or as the Basic-auth
password — the ways existing scripts send them.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from rest_framework import exceptions, permissions, throttling
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from api import keycache
from api.keys import key_hash
from api.models import ApiKey, Scope
from api.services import apikey_touch, key_role_allows
from keychest.accounts.models import Role, Team, User, role_at_least
from keychest.ratelimit import Limit, client_ip, hit


class MalformedAuthorization(Exception):
    """An Authorization header that claims Basic but does not decode."""


def key_from_header(header: str) -> str | None:
    """The key in an Authorization header (Bearer token or Basic password), if any."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and value.strip():
        return value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise MalformedAuthorization from None
        _user, _, password = decoded.partition(":")
        if password:
            return password
    return None


def key_from_request(request: Request) -> str | None:
    """The API key the request carries, wherever an existing script may have put it."""
    try:
        header_key = key_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
    except MalformedAuthorization:
        raise exceptions.AuthenticationFailed("Malformed Basic authorization header.") from None
    if header_key:
        return header_key
    query_key = request.query_params.get("api_key")
    if query_key:
        return query_key
    if request.method not in ("GET", "HEAD", "OPTIONS") and request.content_type:
        data: Any = request.data
        if isinstance(data, dict) or hasattr(data, "getlist"):
            body_key = data.get("api_key")
            if isinstance(body_key, str) and body_key:
                return body_key
    return None


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates by API key; a presented but unknown, revoked or expired key is a 401.

    Verified keys are reused per process while the shared auth epoch is unchanged (see
    api/keycache.py). The epoch is read in the same pipelined Redis round trip that counts the
    request against the per-key and per-address limits, which ApiThrottle then only checks.
    """

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        secret = key_from_request(request)
        if secret is None:
            return None
        api_key = key_verify(request._request, secret)
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="KeyChest API"'


def key_verify(request: HttpRequest, secret: str, *, ip: str | None = None) -> ApiKey:
    """The usable key for `secret` (a fresh instance with user, team and `member_role`), or a 401.

    With Redis, the per-address and per-key counters of a cached key are counted in the same
    round trip as the epoch read, and left on the request for `api_hits`. `ip` is the caller's
    `client_ip(request)` when it already has it.
    """
    if not secret or len(secret) > 128:
        raise exceptions.AuthenticationFailed("Unknown, revoked or expired API key.", code="not-registered")
    digest = key_hash(secret)
    ip = ip if ip is not None else client_ip(request)
    client = keycache.redis_client()
    record = keycache.KEY_CACHE.get(digest) if client is not None else None
    epoch: bytes | None = None
    if client is not None:
        if record is not None:
            limits = key_limits(ip=ip, key_id=record.key_id)
            raw_epoch, hits = _epoch_and_hits(client, limits)
            request._keychest_api_hits = (_limit_ids(limits), hits)  # type: ignore[attr-defined]
        else:
            raw_epoch = client.get(keycache.epoch_full_key())
        epoch = keycache.epoch_of(client, raw_epoch)
    if record is None or record.epoch != epoch:
        if record is not None:
            keycache.KEY_CACHE.discard(digest)
        # The epoch was read before this query: a change committed after it bumps it again.
        record = keycache.key_load(digest, epoch=epoch)
        if record is None:
            raise exceptions.AuthenticationFailed("Unknown, revoked or expired API key.", code="not-registered")
        keycache.KEY_CACHE.put(digest, record)
    api_key = record.api_key()
    if not api_key.is_usable() or not api_key.user.is_active:
        raise exceptions.AuthenticationFailed("Unknown, revoked or expired API key.", code="not-registered")
    if api_key.member_role is None:  # type: ignore[attr-defined]
        raise exceptions.AuthenticationFailed("The key's user is no longer in its team.", code="not-registered")
    if apikey_touch(api_key=api_key, ip=ip):
        record.note_used(api_key.last_used_at)  # type: ignore[arg-type]
    return api_key


@dataclass(frozen=True)
class Caller:
    """The acting user, the team they act in, their role there and the key (None for sessions)."""

    user: User
    team: Team
    role: str
    api_key: ApiKey | None

    @property
    def confirmed(self) -> bool:
        return self.api_key is None or self.api_key.is_confirmed()

    def can(self, scope: str) -> bool:
        if not key_role_allows(self.role, scope):
            return False
        if self.api_key is None:
            return True
        return self.api_key.has_scope(scope)

    def is_admin(self) -> bool:
        admin = role_at_least(self.role, Role.ADMIN)
        return admin and (self.api_key is None or self.api_key.has_scope(Scope.MANAGE))


def caller_of(request: Request) -> Caller | None:
    """The caller of an authenticated request (cached on the request)."""
    cached = getattr(request, "_keychest_caller", None)
    if cached is not None:
        return cached
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        return None
    api_key = request.auth if isinstance(request.auth, ApiKey) else None
    if api_key is not None:
        caller = Caller(user=user, team=api_key.team, role=api_key.member_role, api_key=api_key)  # type: ignore[attr-defined]
    else:
        membership = getattr(request._request, "membership", None)
        if membership is None:
            return None
        caller = Caller(user=user, team=membership.team, role=membership.role, api_key=None)
    request._keychest_caller = caller  # type: ignore[attr-defined]
    return caller


class ScopePermission(permissions.BasePermission):
    """The view names the scope each action needs (`required_scopes` by action or method);
    unconfirmed keys pass only where the view says `allows_unconfirmed`."""

    message = "Your key or role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        caller = caller_of(request)
        if caller is None:
            if getattr(request.user, "is_authenticated", False):
                self.message = "You belong to no team."
                return False
            raise exceptions.NotAuthenticated()
        if not caller.confirmed and not getattr(view, "allows_unconfirmed", False):
            self.message = "This key is not confirmed yet: it may only enrol items and read their status."
            return False
        scope = required_scope(request, view)
        if scope == "admin":
            return caller.is_admin()
        return caller.can(scope)


def required_scope(request: Request, view: Any) -> str:
    scopes: dict[str, str] = getattr(view, "required_scopes", {}) or {}
    action = getattr(view, "action", None)
    if action and action in scopes:
        return scopes[action]
    if request.method in permissions.SAFE_METHODS:
        return scopes.get("safe", Scope.READ)
    return scopes.get("unsafe", Scope.MANAGE)


def key_limits(*, ip: str, key_id: int) -> list[tuple[Limit, str]]:
    """The per-address and per-key limits of a key's request."""
    from django.conf import settings

    return [
        (Limit("api-ip", settings.KEYCHEST_API_RATE_PER_IP, 60), ip),
        (Limit("api-key", settings.KEYCHEST_API_RATE_PER_KEY, 60), f"key:{key_id}"),
    ]


def _api_limits(request: Request, *, ip: str) -> list[tuple[Limit, str]]:
    """The per-address limit, and the per-key (or per signed-in user) one."""
    from django.conf import settings

    if isinstance(request.auth, ApiKey):
        return key_limits(ip=ip, key_id=request.auth.pk)
    limits = [(Limit("api-ip", settings.KEYCHEST_API_RATE_PER_IP, 60), ip)]
    if getattr(request.user, "is_authenticated", False):
        limits.append((Limit("api-key", settings.KEYCHEST_API_RATE_PER_KEY, 60), f"user:{request.user.pk}"))
    return limits


def api_hits(request: HttpRequest, limits: list[tuple[Limit, str]]) -> int:
    """Count this request on `limits` (unless key authentication already did) and return the
    seconds to wait, 0 when every limit still allows it."""
    counted = getattr(request, "_keychest_api_hits", None)
    hits = counted[1] if counted is not None and counted[0] == _limit_ids(limits) else _hit_both(limits)
    wait = 0
    for used, limit, retry_after in hits:
        if used > limit:
            wait = max(wait, retry_after)
    return wait


def _limit_ids(limits: list[tuple[Limit, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((limit.scope, key) for limit, key in limits)


def _queue_hits(pipe: Any, limits: list[tuple[Limit, str]]) -> list[tuple[Limit, int]]:
    """Queue SET NX EX + INCR per counter (the keys and encoding of `keychest.ratelimit.hit`,
    so `peek` reads them); [(limit, seconds left in the window)]."""
    import time

    from django.core.cache import cache

    now = time.time()
    windows = []
    for limit, key in limits:
        window = int(now // limit.seconds)
        remaining = limit.seconds - int(now % limit.seconds)
        full_key = cache.make_and_validate_key(f"rl:{limit.scope}:{window}:{key}")
        pipe.set(full_key, 0, ex=remaining + 1, nx=True)
        pipe.incr(full_key)
        windows.append((limit, remaining))
    return windows


def _read_hits(results: list[Any], windows: list[tuple[Limit, int]]) -> list[tuple[int, int, int]]:
    return [(int(results[2 * i + 1]), limit.count, remaining) for i, (limit, remaining) in enumerate(windows)]


# The epoch read and the counters (SET NX EX + INCR each, as `keychest.ratelimit.hit` does) in
# one Redis command: a script is one request to pack and one reply to parse, where a pipeline of
# five commands cost the client more CPU than the whole round trip cost Redis.
_EPOCH_AND_HITS = """
local out = {redis.call('GET', KEYS[1]) or false}
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], 0, 'EX', ARGV[i - 1], 'NX')
  out[i] = redis.call('INCR', KEYS[i])
end
return out
"""


def _epoch_and_hits(client: Any, limits: list[tuple[Limit, str]]) -> tuple[bytes | None, list[tuple[int, int, int]]]:
    """(the raw epoch, [(used, limit, retry_after)]) in one round trip."""
    import time

    from django.core.cache import cache

    script = getattr(client, "_keychest_epoch_and_hits", None)
    if script is None:  # one per client (and so per thread), loaded into Redis on first use
        script = client._keychest_epoch_and_hits = client.register_script(_EPOCH_AND_HITS)
    now = time.time()
    keys = [keycache.epoch_full_key()]
    args = []
    windows = []
    for limit, key in limits:
        window = int(now // limit.seconds)
        remaining = limit.seconds - int(now % limit.seconds)
        keys.append(cache.make_and_validate_key(f"rl:{limit.scope}:{window}:{key}"))
        args.append(remaining + 1)
        windows.append((limit, remaining))
    out = script(keys=keys, args=args)
    hits = [(int(out[i + 1]), limit.count, remaining) for i, (limit, remaining) in enumerate(windows)]
    return out[0], hits


def _hit_both(limits: list[tuple[Limit, str]]) -> list[tuple[int, int, int]]:
    """Count one hit on several limits; [(used, limit, retry_after)].

    On Redis this is one pipelined round trip; elsewhere it falls back to `hit` per limit.
    """
    client = keycache.redis_client()
    if client is None:
        out = []
        for limit, key in limits:
            verdict = hit(limit, key)
            out.append((verdict.used, verdict.limit, verdict.retry_after))
        return out
    pipe = client.pipeline(transaction=False)
    windows = _queue_hits(pipe, limits)
    return _read_hits(pipe.execute(), windows)


class ApiThrottle(throttling.BaseThrottle):
    """Atomic per-key (or per-user) and per-address counters on the shared cache, per minute.

    When key authentication already counted this request (in its epoch round trip) for the
    same counters, those counts are used; otherwise they are counted here.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        self._wait = api_hits(request._request, _api_limits(request, ip=client_ip(request)))
        return self._wait == 0

    def wait(self) -> float | None:
        return float(self._wait) if self._wait else None
