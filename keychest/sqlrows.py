"""Hand-written SELECTs (and prepared statements) for hot paths that still yield model instances.

The ORM spends far more CPU compiling the queries every API request runs (the key look-up, the
expiration rows, a server's enrolment) than PostgreSQL spends running them. `Part` names the
wanted fields of a model once, renders them as a SELECT list (table aliases chosen by the
caller's SQL), and turns result rows back into instances with `Model.from_db` after the same
value converters the ORM applies — so the rest of the code sees ordinary (partly deferred)
objects. `insert_or_find` is `Model.save()` for a new row as one prepared
`INSERT ... ON CONFLICT DO NOTHING`, answering with the existing row on a conflict.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Field, Model
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

M = TypeVar("M", bound=Model)


class Part(Generic[M]):
    """Some fields of one model, in the model's own field order (what `from_db` expects)."""

    def __init__(self, alias: str, model: type[M], fields: Sequence[str]) -> None:
        meta = model._meta
        wanted = set(fields)
        self.model = model
        self.alias = alias
        self.fields = [f for f in meta.concrete_fields if f.attname in wanted or f.name in wanted]
        found = {f.attname for f in self.fields} | {f.name for f in self.fields}
        missing = wanted - found
        if missing:
            raise ValueError(f"{model.__name__} has no column(s) {sorted(missing)}")
        self.attnames = tuple(f.attname for f in self.fields)
        self._converters: list[tuple[int, list[Callable[..., Any]], Any]] | None = None
        self._plain: bool | None = None

    def select(self) -> list[str]:
        return [f'{self.alias}."{f.column}"' for f in self.fields]

    def converters(self) -> list[tuple[int, list[Callable[..., Any]], Any]]:
        if self._converters is None:
            out = []
            for i, field in enumerate(self.fields):
                col = field.get_col(self.alias)
                convs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                if convs:
                    out.append((i, convs, col))
            self._converters = out
        return self._converters

    def values(self, raw: Sequence[Any]) -> list[Any]:
        values = list(raw)
        for i, convs, col in self.converters():
            value = values[i]
            for convert in convs:
                value = convert(value, col, connection)
            values[i] = value
        return values

    def instance(self, values: Sequence[Any]) -> M:
        """An instance as `Model.from_db` makes it: these fields loaded, the others deferred.

        Without pre_init/post_init receivers for the model, `__init__` (a loop over every field
        of the model) has nothing to do that the instance's `__dict__` cannot hold directly, and
        deferred fields are exactly the attributes missing from it; so set the dict.
        """
        if self._plain is None:
            self._plain = not (pre_init.has_listeners(self.model) or post_init.has_listeners(self.model))
        if not self._plain:
            return self.model.from_db(connection.alias, self.attnames, list(values))
        obj = self.model.__new__(self.model)
        obj.__dict__.update(zip(self.attnames, values, strict=True))
        state = ModelState()
        state.adding = False
        state.db = connection.alias
        obj._state = state
        return obj


def column(model: type[Model], name: str) -> str:
    """The quoted column name of a field (by name or attname)."""
    field = cast("Field[Any, Any]", model._meta.get_field(name))
    return f'"{field.column}"'


def table(model: type[Model]) -> str:
    return f'"{model._meta.db_table}"'


# Server-side prepared statements, per database connection: PostgreSQL spent about four times
# longer planning these small joins than running them. Prepared statements belong to the
# session and survive rollbacks; a new connection (Django reconnects) prepares them again.
# A session can also lose them (DISCARD ALL, DEALLOCATE ALL) or, behind a pooler, be a different
# server session than the one that prepared them: `execute_prepared` then prepares again.
_prepared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_prepared_lock = threading.Lock()

# SQLSTATEs raised before a statement runs, so running it again cannot run it twice.
_NOT_PREPARED = "26000"  # invalid_sql_statement_name: EXECUTE of a name this session lacks
_ALREADY_PREPARED = "42P05"  # duplicate_prepared_statement: PREPARE of a name it already has


@dataclass(frozen=True)
class Prepared:
    """A statement as sent: its session-wide name, and the SQL that runs it."""

    name: str
    execute: str  # EXECUTE name(%s, ...)
    # PREPARE name AS ...; EXECUTE name(%s, ...): one round trip, and one implicit transaction,
    # so one server session even behind a pooler. psycopg2 returns the last statement's rows.
    prepare_and_execute: str


_statements: dict[tuple[str, str], Prepared] = {}


def prepared_statement(name: str, sql: str) -> Prepared:
    """The statement `execute_prepared` sends for `sql` under `name`.

    The name carries a digest of the SQL: a session that already holds the name (a pooled
    server connection that outlived a deploy which changed the SQL) then holds this very SQL,
    so finding it prepared is as good as preparing it.
    """
    key = (name, sql)
    statement = _statements.get(key)
    if statement is None:
        full = f"{name}_{hashlib.sha256(sql.encode()).hexdigest()[:12]}"
        if not full.isidentifier() or len(full) > 63:
            raise ValueError(f"prepared statement name {name!r} must be a short identifier")
        parts = sql.split("%s")
        numbered = "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], start=1)) + parts[-1]
        execute = f"EXECUTE {full}({', '.join(['%s'] * (len(parts) - 1))})" if len(parts) > 1 else f"EXECUTE {full}"
        statement = Prepared(full, execute, f"PREPARE {full} AS {numbered}; {execute}")
        _statements[key] = statement
    return statement


def execute_prepared(cursor: Any, name: str, sql: str, params: Sequence[Any]) -> None:
    """Run `sql` (with `%s` placeholders, no other `%`) as the prepared statement `name`.

    On PostgreSQL with KEYCHEST_DB_PREPARED_STATEMENTS on, the statement is PREPAREd once per
    connection (in the same message as its first EXECUTE) and then EXECUTEd; otherwise the SQL
    simply runs. When the session turns out not to hold the statement (26000) or to hold it
    already (42P05), it is prepared again (or taken as prepared) and run once more: both errors
    come before the statement runs. In a transaction each attempt runs under a savepoint, since
    an error would otherwise abort the caller's transaction; autocommit needs none.
    """
    if connection.vendor != "postgresql" or not settings.KEYCHEST_DB_PREPARED_STATEMENTS:
        cursor.execute(sql, params)
        return
    statement = prepared_statement(name, sql)
    connection.ensure_connection()
    with _prepared_lock:
        done = _prepared.setdefault(connection.connection, set())
        known = statement.name in done
    in_transaction = not connection.get_autocommit()
    for retry in (False, True):
        try:
            with transaction.atomic() if in_transaction else nullcontext():
                cursor.execute(statement.execute if known else statement.prepare_and_execute, params)
        except DatabaseError as exc:
            state = getattr(exc.__cause__, "pgcode", None)
            with _prepared_lock:
                if state == _NOT_PREPARED:
                    done.discard(statement.name)
                elif state == _ALREADY_PREPARED:
                    done.add(statement.name)
            if retry or state != (_NOT_PREPARED if known else _ALREADY_PREPARED):
                raise
            known = not known
        else:
            if not known:
                with _prepared_lock:
                    done.add(statement.name)
            return


_INSERT_SQL: dict[tuple[type[Model], tuple[str, ...], str], tuple[str, list[Any], list[int], Part[Any]]] = {}


def insert_or_find(instance: M, *, name: str, unique: Sequence[str], where: str = "") -> tuple[bool, M | None] | None:
    """Insert a new `instance` as `save()` would (defaults, `auto_now_add`, value preparation),
    unless a row already holds its `unique` fields (a unique constraint on them, partial with
    `where` when given, e.g. `"removed_at" IS NULL`); then find that row. One prepared
    statement either way, no transaction round trips:

        WITH ins AS (INSERT ... ON CONFLICT (unique) WHERE ... DO NOTHING RETURNING *)
        SELECT true, ... FROM ins
        UNION ALL SELECT false, ... FROM table WHERE unique = values AND ... AND NOT EXISTS (SELECT FROM ins)

    Returns (True, None) when inserted (the instance then has its primary key); (False, row)
    with the existing row (all its fields loaded) on a conflict; (False, None) when the row in
    the way is one this statement's snapshot cannot see (a concurrent insert committed after it
    began: look it up again). None when the database is not PostgreSQL (the caller saves the
    usual way). Sends no model signals: use it only for models without receivers.
    """
    if connection.vendor != "postgresql":
        return None
    model = type(instance)
    key = (model, tuple(unique), where)
    if key not in _INSERT_SQL:
        meta = model._meta
        fields = [f for f in meta.local_concrete_fields if f is not meta.pk and not getattr(f, "generated", False)]
        unique_fields = [cast("Field[Any, Any]", meta.get_field(u)) for u in unique]
        row = Part("r", model, [f.attname for f in meta.concrete_fields])
        columns = ", ".join(f'"{f.column}"' for f in fields)
        targets = ", ".join(f'"{f.column}"' for f in unique_fields)
        returned = ", ".join(row.select())
        condition = " AND ".join([*(f'r."{f.column}" = %s' for f in unique_fields), *([where] if where else [])])
        _INSERT_SQL[key] = (
            f'WITH ins AS (INSERT INTO "{meta.db_table}" ({columns}) VALUES ({", ".join(["%s"] * len(fields))}) '  # noqa: S608 - names from model meta, values as parameters
            f"ON CONFLICT ({targets}){f' WHERE {where}' if where else ''} DO NOTHING RETURNING *) "
            f"SELECT true, {returned} FROM ins r "
            f'UNION ALL SELECT false, {returned} FROM "{meta.db_table}" r '
            f"WHERE {condition} AND NOT EXISTS (SELECT FROM ins)",
            fields,
            [fields.index(f) for f in unique_fields],  # where the unique values are among `fields`
            row,
        )
    sql, fields, unique_at, row = _INSERT_SQL[key]
    db = connections[connection.alias]  # the wrapper itself: each use of the proxy costs a look-up
    values = [f.get_db_prep_save(f.pre_save(instance, True), db) for f in fields]
    with connection.cursor() as cursor:
        execute_prepared(cursor, name, sql, [*values, *(values[i] for i in unique_at)])
        found = cursor.fetchone()
    if found is None:
        return False, None
    if not found[0]:
        return False, row.instance(row.values(found[1:]))
    instance.pk = found[1 + row.attnames.index(model._meta.pk.attname)]
    instance._state.adding = False
    instance._state.db = connection.alias
    return True, None


UPDATE_CHUNK = 1000


def update_rows(
    model: type[Model],
    fields: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    same: dict[str, Any] | None = None,
) -> int:
    """Set `fields` per row (`rows`: the primary key, then one value per field) and the `same`
    values on every row, in set-based statements whose cost does not grow with an expression per
    row and field (Django's `bulk_update` builds one CASE WHEN per row and field):

        UPDATE t SET f = v.f, g = %s FROM (VALUES (%s::bigint, %s::jsonb), ...) AS v(pk, f) WHERE t.pk = v.pk

    Values are prepared as `save()` prepares them. On other databases it falls back to
    `bulk_update`. Returns the number of rows updated."""
    if not rows:
        return 0
    meta = model._meta
    db = connections[connection.alias]
    targets = [cast("Field[Any, Any]", meta.get_field(name)) for name in fields]
    constants = [(cast("Field[Any, Any]", meta.get_field(name)), value) for name, value in (same or {}).items()]
    if connection.vendor != "postgresql":
        return _update_rows_portable(model, targets, rows, constants)
    pk = meta.pk
    assert pk is not None
    cells = ", ".join(f"%s::{f.db_type(db)}" for f in [pk, *targets])
    assignments = [f'"{f.column}" = v."{f.column}"' for f in targets] + [f'"{f.column}" = %s' for f, _ in constants]
    names = ", ".join(f'"{f.column}"' for f in [pk, *targets])
    fixed = [f.get_db_prep_save(value, db) for f, value in constants]
    updated = 0
    with connection.cursor() as cursor:
        for start in range(0, len(rows), UPDATE_CHUNK):
            chunk = rows[start : start + UPDATE_CHUNK]
            values = ", ".join([f"({cells})"] * len(chunk))
            params: list[Any] = list(fixed)
            for row in chunk:
                params.append(row[0])
                params.extend(f.get_db_prep_save(value, db) for f, value in zip(targets, row[1:], strict=True))
            cursor.execute(
                f'UPDATE "{meta.db_table}" AS t SET {", ".join(assignments)} '  # noqa: S608 - names from model meta, values as parameters
                f'FROM (VALUES {values}) AS v({names}) WHERE t."{pk.column}" = v."{pk.column}"',
                params,
            )
            updated += cursor.rowcount
    return updated


def _update_rows_portable(
    model: type[Model], targets: list[Field[Any, Any]], rows: Sequence[Sequence[Any]], constants: list[Any]
) -> int:
    instances = []
    for row in rows:
        instance = model(pk=row[0])
        for field, value in zip(targets, row[1:], strict=True):
            setattr(instance, field.attname, value)
        for field, value in constants:
            setattr(instance, field.attname, value)
        instances.append(instance)
    names = [f.name for f in targets] + [f.name for f, _ in constants]
    return model._default_manager.bulk_update(instances, names, batch_size=500)
