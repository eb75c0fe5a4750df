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

from django.conf import settings
from django.http import HttpRequest
from rest_framework import exceptions, permissions, throttling
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from api import keycache
from api.keys import key_hash
from api.models import ApiKey, Scope
from api.services import apikey_touch, key_role_allows
from keychest.accounts.models import Role, Team, User, role_at_least
from keychest.ratelimit import LeasedCounters, Limit, client_ip


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

    Verified keys are reused per process while the auth epoch is unchanged (api/keycache.py);
    here the epoch of a reused key is checked with a query of its own before the view runs.
    """

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        secret = key_from_request(request)
        if secret is None:
            return None
        api_key = key_verify(request._request, secret)
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="KeyChest API"'


_UNKNOWN = "Unknown, revoked or expired API key."


@dataclass
class KeyLookup:
    """A usable key for one request: its look-up (`record`), and whether that came from this
    process's cache, so that its epoch still has to be checked before the request reads or
    writes (see api/keycache.py)."""

    digest: str
    record: keycache.KeyRecord
    cached: bool
    api_key: ApiKey

    def touch(self, ip: str) -> None:
        """Record the use (at most once a minute per key)."""
        if apikey_touch(api_key=self.api_key, ip=ip):
            self.record.note_used(self.api_key.last_used_at)  # type: ignore[arg-type]

    def reloaded(self) -> KeyLookup:
        """The key read from the database again (its cached entry's epoch moved on); else a 401."""
        keycache.KEY_CACHE.discard(self.digest)
        return key_reload(self.digest)


def key_lookup(secret: str) -> KeyLookup:
    """The usable key for `secret`, from the cache (epoch not yet checked) or loaded; else a 401.

    A cached entry that refuses the key is looked up again first: a refusal is rare, and the
    rows may have changed since (the user re-activated, the membership restored).
    """
    if not secret or len(secret) > 128:
        raise exceptions.AuthenticationFailed(_UNKNOWN, code="not-registered")
    digest = key_hash(secret)
    record = keycache.KEY_CACHE.get(digest)
    if record is not None:
        try:
            return KeyLookup(digest, record, True, _usable(record))
        except exceptions.AuthenticationFailed:
            keycache.KEY_CACHE.discard(digest)
    return key_reload(digest)


def key_reload(digest: str) -> KeyLookup:
    """The usable key with this hash, read from the database now; else a 401."""
    record = keycache.key_load(digest)
    if record is None:
        raise exceptions.AuthenticationFailed(_UNKNOWN, code="not-registered")
    keycache.KEY_CACHE.put(digest, record)
    return KeyLookup(digest, record, False, _usable(record))


def _usable(record: keycache.KeyRecord) -> ApiKey:
    api_key = record.api_key()
    if not api_key.is_usable() or not api_key.user.is_active:
        raise exceptions.AuthenticationFailed(_UNKNOWN, code="not-registered")
    if api_key.member_role is None:  # type: ignore[attr-defined]
        raise exceptions.AuthenticationFailed("The key's user is no longer in its team.", code="not-registered")
    return api_key


def key_verify(request: HttpRequest, secret: str) -> ApiKey:
    """The usable key for `secret` (a fresh instance with user, team and `member_role`), or a 401,
    verified now: a cached key's epoch is checked with one query."""
    key = key_lookup(secret)
    if key.cached and keycache.epoch_read() != key.record.epoch:
        key = key.reloaded()
    key.touch(client_ip(request))
    return key.api_key


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
    return [
        (Limit("api-ip", settings.KEYCHEST_API_RATE_PER_IP, 60), ip),
        (Limit("api-key", settings.KEYCHEST_API_RATE_PER_KEY, 60), f"key:{key_id}"),
    ]


def _api_limits(request: Request, *, ip: str) -> list[tuple[Limit, str]]:
    """The per-address limit, and the per-key (or per signed-in user) one."""
    if isinstance(request.auth, ApiKey):
        return key_limits(ip=ip, key_id=request.auth.pk)
    limits = [(Limit("api-ip", settings.KEYCHEST_API_RATE_PER_IP, 60), ip)]
    if getattr(request.user, "is_authenticated", False):
        limits.append((Limit("api-key", settings.KEYCHEST_API_RATE_PER_KEY, 60), f"user:{request.user.pk}"))
    return limits


LEASES = LeasedCounters()


def api_hits(limits: list[tuple[Limit, str]]) -> int:
    """Count this request on `limits`; the seconds to wait, 0 when every limit allows it."""
    return LEASES.take(limits, lease=settings.KEYCHEST_API_RATE_LEASE)


class ApiThrottle(throttling.BaseThrottle):
    """Atomic per-key (or per-user) and per-address counters on the shared cache, per minute
    (leased a few hits at a time: `keychest.ratelimit.LeasedCounters`)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        self._wait = api_hits(_api_limits(request, ip=client_ip(request)))
        return self._wait == 0

    def wait(self) -> float | None:
        return float(self._wait) if self._wait else None
