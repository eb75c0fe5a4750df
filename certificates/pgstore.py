"""The PostgreSQL bulk store behind `certificates_store_bulk`: set-based writes, a few statements a batch.

Per batch (runs in the caller's transaction, so CT ingestion commits certificates, names,
sources, events and the log position together):

1. one SELECT finds the fingerprints already stored;
2. the missing certificates get ids from the table's sequence and go in with one binary COPY,
   sorted by fingerprint, inside a savepoint. Nothing else can hold those fingerprints unless a
   concurrent writer (another log's worker, a scan, an upload) stored one since step 1; then the
   COPY fails on the unique fingerprint, the savepoint is rolled back, and the batch goes in with
   `INSERT ... ON CONFLICT (sha256) DO NOTHING RETURNING` instead, which keeps the other
   writer's row and reports only ours as new;
3. the names and sources of the certificates this batch created go in with one COPY each: their
   certificate ids are new in this very transaction, so no other row can collide with them;
4. sources of certificates that were already stored (a second log, a rescan) are upserted with
   `ON CONFLICT DO NOTHING`;
5. a certificate stored before (scanned, uploaded) and now read from a CT log becomes
   `ct_logged` (one UPDATE, only when the batch has such certificates).

Rows are written in fingerprint order so two writers that share certificates wait for each
other in the same order and never deadlock.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from certificates import pgcopy
from certificates.models import Certificate, CertificateName, CertificateSource, SourceKind
from kcproto.names import is_wildcard, registered_domain, reversed_name
from kcproto.x509 import ParsedCertificate


@dataclass(frozen=True)
class StoreItem:
    """One certificate to store and where it was seen (`certificates.services.certificates_store_bulk`)."""

    parsed: ParsedCertificate
    source: str
    source_ref: str = ""


_CERT = Certificate._meta.db_table
_NAME = CertificateName._meta.db_table
_SOURCE = CertificateSource._meta.db_table
_CERT_COLUMNS = (
    "id, sha256, der, serial, issuer, subject, issuer_key_id, subject_key_id, not_before, not_after, lifetime, "
    "key_type, key_size, signature_algorithm, is_ca, is_precertificate, issuance_key, first_seen_at, thinned, "
    "ct_logged"
)
_NAME_COLUMNS = "certificate_id, name, reversed_name, registered_domain, is_wildcard, not_before, not_after"
_SOURCE_COLUMNS = "certificate_id, kind, ref, seen_at"


def copy_supported() -> bool:
    """This path needs PostgreSQL through psycopg2 (the pinned driver: `copy_expert`)."""
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return not is_psycopg3


def store(
    items: Sequence[StoreItem], by_sha: dict[str, ParsedCertificate]
) -> tuple[dict[str, int], list[ParsedCertificate]]:
    """Store a batch; returns (sha256 -> certificate id for every item, the certificates created here)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'SELECT sha256, id FROM "{_CERT}" WHERE sha256 = ANY(%s)', [list(by_sha)])  # noqa: S608
        ids: dict[str, int] = dict(cursor.fetchall())
        missing = sorted((p for sha, p in by_sha.items() if sha not in ids), key=lambda p: p.sha256)
        logged = {item.parsed.sha256 for item in items if item.source == SourceKind.CT}
        created: dict[str, int] = {}
        if missing:
            created = _copy_certificates(cursor, missing, logged)
            if not created:  # a concurrent writer got one of them in first
                created = _insert_certificates(cursor, missing, logged)
            ids.update(created)
            lost = [p.sha256 for p in missing if p.sha256 not in ids]
            if lost:  # theirs, not new here: only their ids
                cursor.execute(f'SELECT sha256, id FROM "{_CERT}" WHERE sha256 = ANY(%s)', [lost])  # noqa: S608
                ids.update(cursor.fetchall())
        # In the batch's own order (a log's order): the first entry of an issuance is the one
        # its "certificate_issued" event describes.
        new = [p for sha, p in by_sha.items() if sha in created]
        _copy(cursor, _NAME, _NAME_COLUMNS, (row for p in new for row in _name_rows(created[p.sha256], p)))
        now = pgcopy.timestamptz(timezone.now())
        fresh: set[tuple[int, str, str]] = set()
        known: set[tuple[int, str, str]] = set()
        for item in items:
            cid = ids.get(item.parsed.sha256)
            if cid is not None:
                (fresh if item.parsed.sha256 in created else known).add((cid, item.source, item.source_ref[:300]))
        _copy(
            cursor,
            _SOURCE,
            _SOURCE_COLUMNS,
            (pgcopy.row((pgcopy.int8(c), pgcopy.text(k), pgcopy.text(r), now)) for c, k, r in sorted(fresh)),
        )
        if known:
            _insert_sources(cursor, sorted(known))
        newly_logged = sorted(ids[sha] for sha in logged if sha in ids and sha not in created)
        if newly_logged:
            cursor.execute(
                f'UPDATE "{_CERT}" SET ct_logged = true WHERE id = ANY(%s) AND NOT ct_logged',  # noqa: S608
                [newly_logged],
            )
    return ids, new


def _certificate_row(cid: int, p: ParsedCertificate, now: bytes, ct_logged: bool) -> bytes:
    return pgcopy.row(
        (
            pgcopy.int8(cid),
            pgcopy.text(p.sha256),
            pgcopy.bytea(p.der),
            pgcopy.text(p.serial[:80]),
            pgcopy.text(p.issuer),
            pgcopy.text(p.subject),
            pgcopy.text(p.issuer_key_id[:128]),
            pgcopy.text(p.subject_key_id[:128]),
            pgcopy.timestamptz(p.not_before),
            pgcopy.timestamptz(p.not_after),
            pgcopy.interval(p.lifetime),
            pgcopy.text(p.key_type),
            pgcopy.int4(p.key_size),
            pgcopy.text(p.signature_algorithm[:64]),
            pgcopy.boolean(p.is_ca),
            pgcopy.boolean(p.is_precertificate),
            pgcopy.text(p.issuance_key),
            now,
            pgcopy.FALSE,
            pgcopy.TRUE if ct_logged else pgcopy.FALSE,
        )
    )


def _name_rows(cid: int, p: ParsedCertificate) -> list[bytes]:
    head = b"\x00\x07" + pgcopy.int8(cid)
    tail = pgcopy.timestamptz(p.not_before) + pgcopy.timestamptz(p.not_after)
    text = pgcopy.text
    # A DNS SAN "192.0.2.1" normalises to the same text as an IP SAN: one row per name.
    return [
        b"".join(
            (
                head,
                text(n),
                text(reversed_name(n)),
                text(registered_domain(n)),
                pgcopy.TRUE if is_wildcard(n) else pgcopy.FALSE,
                tail,
            )
        )
        for n in dict.fromkeys(p.all_names)
    ]


def _copy(cursor: Any, table: str, columns: str, rows: Iterable[bytes]) -> int:
    data = pgcopy.copy_data(rows)
    if len(data) == len(pgcopy.HEADER) + len(pgcopy.TRAILER):
        return 0
    with connection.wrap_database_errors:
        cursor.copy_expert(f'COPY "{table}" ({columns}) FROM STDIN WITH (FORMAT binary)', io.BytesIO(data))
    return cursor.rowcount


def _copy_certificates(cursor: Any, missing: list[ParsedCertificate], logged: set[str]) -> dict[str, int]:
    """COPY the certificates with ids drawn from the sequence; {} if one was stored meanwhile."""
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [_CERT, len(missing)]
    )
    new_ids = [r[0] for r in cursor.fetchall()]
    now = pgcopy.timestamptz(timezone.now())
    try:
        with transaction.atomic():  # a savepoint: a failed COPY must not doom the caller's transaction
            _copy(
                cursor,
                _CERT,
                _CERT_COLUMNS,
                (_certificate_row(i, p, now, p.sha256 in logged) for i, p in zip(new_ids, missing, strict=True)),
            )
    except IntegrityError:
        return {}
    return {p.sha256: i for i, p in zip(new_ids, missing, strict=True)}


def _insert_certificates(cursor: Any, parsed: list[ParsedCertificate], logged: set[str]) -> dict[str, int]:
    """The conflict-tolerant path: one INSERT ... SELECT FROM unnest(arrays) ... ON CONFLICT DO NOTHING."""
    now = timezone.now()
    columns: list[tuple[str, str, list[Any]]] = [
        ("sha256", "varchar", [p.sha256 for p in parsed]),
        ("der", "bytea", [p.der for p in parsed]),
        ("serial", "varchar", [p.serial[:80] for p in parsed]),
        ("issuer", "text", [p.issuer for p in parsed]),
        ("subject", "text", [p.subject for p in parsed]),
        ("issuer_key_id", "varchar", [p.issuer_key_id[:128] for p in parsed]),
        ("subject_key_id", "varchar", [p.subject_key_id[:128] for p in parsed]),
        ("not_before", "timestamptz", [p.not_before for p in parsed]),
        ("not_after", "timestamptz", [p.not_after for p in parsed]),
        ("lifetime", "interval", [p.lifetime for p in parsed]),
        ("key_type", "varchar", [p.key_type for p in parsed]),
        ("key_size", "integer", [p.key_size for p in parsed]),
        ("signature_algorithm", "varchar", [p.signature_algorithm[:64] for p in parsed]),
        ("is_ca", "boolean", [p.is_ca for p in parsed]),
        ("is_precertificate", "boolean", [p.is_precertificate for p in parsed]),
        ("issuance_key", "varchar", [p.issuance_key for p in parsed]),
        ("first_seen_at", "timestamptz", [now] * len(parsed)),
        ("thinned", "boolean", [False] * len(parsed)),
        ("ct_logged", "boolean", [p.sha256 in logged for p in parsed]),
    ]
    cursor.execute(
        _unnest_insert(_CERT, columns) + " ON CONFLICT (sha256) DO NOTHING RETURNING sha256, id",
        [values for _, _, values in columns],
    )
    return dict(cursor.fetchall())


def _insert_sources(cursor: Any, rows: list[tuple[int, str, str]]) -> None:
    now = timezone.now()
    columns: list[tuple[str, str, list[Any]]] = [
        ("certificate_id", "bigint", [r[0] for r in rows]),
        ("kind", "varchar", [r[1] for r in rows]),
        ("ref", "varchar", [r[2] for r in rows]),
        ("seen_at", "timestamptz", [now] * len(rows)),
    ]
    cursor.execute(_unnest_insert(_SOURCE, columns) + " ON CONFLICT DO NOTHING", [v for _, _, v in columns])


def _unnest_insert(table: str, columns: list[tuple[str, str, list[Any]]]) -> str:
    names = ", ".join(f'"{c}"' for c, _, _ in columns)
    arrays = ", ".join(f"%s::{t}[]" for _, t, _ in columns)
    return f'INSERT INTO "{table}" ({names}) SELECT * FROM unnest({arrays})'  # noqa: S608 - fixed identifiers
