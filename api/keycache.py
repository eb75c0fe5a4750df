"""Verified API keys, looked up in one hand-written query and kept a few seconds per process.

Every API request presents a key. Looking it up (key, user, team and the user's role there) is
one indexed query; building that query with the ORM cost more CPU than PostgreSQL spent running
it. So the look-up is plain SQL (`key_load`), and its result is kept per process (`KeyCache`)
as plain values, never as a shared model instance: each request gets fresh `ApiKey`, `User` and
`Team` objects made with `Model.from_db`, like the ORM's `.only()` would.

A cached entry is used only while the **auth epoch** it was loaded under is still the current
one. The epoch is a PostgreSQL sequence (`api_auth_epoch`, migration api 0003); every change
that can take a right away or change what a key may do — a key revoked, confirmed, expired,
deleted or its scopes edited; a membership's role changed or the membership removed; a user
deactivated, renamed or deleted; a team deleted — advances it (`auth_epoch_bump`, called by the
services and by model signals as a net for admin edits). The key look-up reads the epoch in the
same statement (one snapshot), so an entry always carries the epoch its rows were read under.

Using an entry costs one small query: authentication reads the current epoch (`epoch_read`, a
prepared statement) before the view runs, and when it has moved on drops the entry and looks
the key up again. So a revoked key is refused by every process on its very next request. Entries also expire after
`KEYCHEST_API_KEY_CACHE_SECONDS` (and the time-based rules — an unconfirmed key's 7-day window —
are checked on every use).

Ordering makes this safe: a sequence is not transactional, so a change advances the epoch inside
its transaction *and again after it commits*; an entry loaded from rows older than the change
(read before it committed) therefore carries an epoch that the change has replaced.

On other databases (SQLite for `make run` and local tests) there is no epoch and entries are
never reused.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from api.models import ApiKey
from keychest.accounts.models import Membership, Team, User
from keychest.sqlrows import Part, column, execute_prepared, table

MAX_ENTRIES = 10_000
EPOCH_SEQUENCE = "api_auth_epoch"
_EPOCH_VALUE = "(SELECT last_value FROM api_auth_epoch)"  # EPOCH_SEQUENCE

# The columns authentication needs, by model; everything else stays deferred (loaded on access).
KEY = Part(
    "k",
    ApiKey,
    (
        "id",
        "uuid",
        "team_id",
        "user_id",
        "display_prefix",
        "scopes",
        "claim_email",
        "confirmed_at",
        "revoked_at",
        "last_used_at",
        "created_at",
    ),
)
USER = Part("u", User, ("id", "email", "is_active"))
TEAM = Part("t", Team, ("id", "uuid", "name"))
LAST_USED_AT = KEY.attnames.index("last_used_at")


def has_epoch() -> bool:
    """Whether the database keeps an auth epoch (PostgreSQL), so that keys may be cached."""
    return connection.vendor == "postgresql"


def epoch_read() -> int | None:
    """The current epoch (one query), or None where there is none."""
    if not has_epoch():
        return None
    with connection.cursor() as cursor:
        execute_prepared(cursor, "kc_api_auth_epoch", f"SELECT {_EPOCH_VALUE}", [])
        return cursor.fetchone()[0]


def _epoch_advance() -> None:
    KEY_CACHE.clear()
    if has_epoch():
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(%s)", [EPOCH_SEQUENCE])


def auth_epoch_bump() -> None:
    """Invalidate every process's cached keys: now, and again once the current transaction commits.

    Call it from anything that revokes or narrows (or widens) what a key may do. The immediate
    bump makes the change effective at once in this transaction's own process; the one after
    commit closes the window in which another process could have re-read the old rows.
    """
    _epoch_advance()
    transaction.on_commit(_epoch_advance)


class KeyRecord:
    """The look-up's values for one key hash, loaded under `epoch`."""

    __slots__ = ("epoch", "key_values", "loaded_at", "role", "team_values", "user_values")

    def __init__(
        self,
        key_values: Sequence[Any],
        user_values: Sequence[Any],
        team_values: Sequence[Any],
        role: str | None,
        epoch: int | None,
    ) -> None:
        self.key_values = list(key_values)
        self.user_values = tuple(user_values)
        self.team_values = tuple(team_values)
        self.role = role
        self.epoch = epoch
        self.loaded_at = time.monotonic()

    @property
    def key_id(self) -> int:
        return self.key_values[0]

    def api_key(self) -> ApiKey:
        """A fresh ApiKey (with user, team and `member_role`) for one request."""
        api_key = KEY.instance(self.key_values)
        api_key.user = USER.instance(self.user_values)
        api_key.team = TEAM.instance(self.team_values)
        api_key.member_role = self.role  # type: ignore[attr-defined]
        return api_key

    def note_used(self, when: datetime) -> None:
        self.key_values[LAST_USED_AT] = when


class KeyCache:
    """Per-process, thread-safe, bounded map from key hash to KeyRecord."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[str, KeyRecord] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def get(self, digest: str) -> KeyRecord | None:
        """The entry if younger than the TTL (its epoch is checked by the caller)."""
        ttl = settings.KEYCHEST_API_KEY_CACHE_SECONDS
        with self._lock:
            record = self._entries.get(digest)
            if record is None:
                return None
            if time.monotonic() - record.loaded_at >= ttl:
                del self._entries[digest]
                return None
            return record

    def put(self, digest: str, record: KeyRecord) -> None:
        if record.epoch is None or settings.KEYCHEST_API_KEY_CACHE_SECONDS <= 0:
            return
        with self._lock:
            self._entries[digest] = record
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard(self, digest: str) -> None:
        with self._lock:
            self._entries.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


KEY_CACHE = KeyCache()

_SQL: str | None = None


def _lookup_sql() -> str:
    """SELECT the key's, user's and team's columns, the user's role in the key's team and the
    auth epoch (in the same snapshot), by hash."""
    global _SQL
    if _SQL is None:
        role = f"m.{column(Membership, 'role')}"
        epoch = _EPOCH_VALUE if has_epoch() else "NULL"
        _SQL = (
            f"SELECT {', '.join([*KEY.select(), *USER.select(), *TEAM.select(), role, epoch])} "  # noqa: S608 - names from model meta, values as parameters
            f"FROM {table(ApiKey)} k "
            f"JOIN {table(User)} u ON u.{column(User, 'id')} = k.{column(ApiKey, 'user')} "
            f"JOIN {table(Team)} t ON t.{column(Team, 'id')} = k.{column(ApiKey, 'team')} "
            f"LEFT JOIN {table(Membership)} m ON m.{column(Membership, 'team')} = k.{column(ApiKey, 'team')} "
            f"AND m.{column(Membership, 'user')} = k.{column(ApiKey, 'user')} "
            f"WHERE k.{column(ApiKey, 'key_hash')} = %s"
        )
    return _SQL


def key_load(digest: str) -> KeyRecord | None:
    """The key with this hash, its user, team, the user's role there and the epoch, in one query."""
    with connection.cursor() as cursor:
        execute_prepared(cursor, "kc_api_key_lookup", _lookup_sql(), [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    nk, nu, nt = len(KEY.attnames), len(USER.attnames), len(TEAM.attnames)
    return KeyRecord(
        KEY.values(row[:nk]),
        USER.values(row[nk : nk + nu]),
        TEAM.values(row[nk + nu : nk + nu + nt]),
        row[nk + nu + nt],
        row[nk + nu + nt + 1],
    )


# --- invalidation on writes that bypass the services (admin, shell, cascades) ------------------
_USER_FIELDS_THAT_MATTER = {"is_active", "email"}
_TEAM_FIELDS_THAT_MATTER = {"name", "uuid"}


def _saved(fields_that_matter: set[str] | None, *, bump_on_create: bool) -> Any:
    def receiver(sender: Any, instance: Any, created: bool, update_fields: Any = None, **_: Any) -> None:
        if created and not bump_on_create:
            return  # nothing can be cached for a row that did not exist
        if update_fields is not None and fields_that_matter is not None and not set(update_fields) & fields_that_matter:
            return
        auth_epoch_bump()

    return receiver


def _deleted(sender: Any, instance: Any, **_: Any) -> None:
    auth_epoch_bump()


_RECEIVERS: list[Any] = []


def connect_signals() -> None:
    """Bump the epoch whenever a key, membership, user or team changes through model saves.

    The services bump explicitly where they use `QuerySet.update()` (which sends no signal).
    A new membership bumps too: a key whose user was not in its team is cached as refused.
    """
    from django.db.models.signals import post_delete, post_save

    if _RECEIVERS:
        return
    _RECEIVERS.extend(
        [
            (ApiKey, _saved(None, bump_on_create=False)),
            (Membership, _saved(None, bump_on_create=True)),
            (User, _saved(_USER_FIELDS_THAT_MATTER, bump_on_create=False)),
            (Team, _saved(_TEAM_FIELDS_THAT_MATTER, bump_on_create=False)),
        ]
    )
    for model, receiver in _RECEIVERS:
        post_save.connect(receiver, sender=model, weak=False, dispatch_uid=f"keycache-save-{model.__name__}")
        post_delete.connect(_deleted, sender=model, weak=False, dispatch_uid=f"keycache-delete-{model.__name__}")
