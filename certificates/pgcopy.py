"""PostgreSQL binary COPY encoding for the certificate store's bulk writes. Pure: no Django.

CT ingestion writes thousands of certificate, name and source rows per chunk. `COPY ... FROM
STDIN (FORMAT binary)` is PostgreSQL's cheapest way in: no SQL text to parse, no hex-encoded
bytea, no timestamp parsing. Each row is a 16-bit field count, then per field a 32-bit length and
the value in the type's binary "send" format (network byte order).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # signature, flags, extension
TRAILER = b"\xff\xff"
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_INT8 = struct.Struct(">iq")
_INT4 = struct.Struct(">ii")
_LEN = struct.Struct(">i")
_INTERVAL = struct.Struct(">iqii")
TRUE = b"\x00\x00\x00\x01\x01"
FALSE = b"\x00\x00\x00\x01\x00"


def text(value: str) -> bytes:
    """text/varchar. (PostgreSQL refuses NUL in text; the parser never produces one.)"""
    raw = value.encode("utf-8", "replace")
    return _LEN.pack(len(raw)) + raw


def bytea(value: bytes) -> bytes:
    return _LEN.pack(len(value)) + value


def int8(value: int) -> bytes:
    return _INT8.pack(8, value)


def int4(value: int) -> bytes:
    return _INT4.pack(4, value)


def boolean(value: bool) -> bytes:
    return TRUE if value else FALSE


def timestamptz(value: datetime) -> bytes:
    """Microseconds since 2000-01-01 UTC. A naive datetime raises TypeError (never guess a zone)."""
    return _INT8.pack(8, (value - _PG_EPOCH) // _MICROSECOND)


def interval(value: timedelta) -> bytes:
    """Microseconds, days, months — how psycopg2 sends a timedelta (days kept apart, no months)."""
    return _INTERVAL.pack(16, value.seconds * 1_000_000 + value.microseconds, value.days, 0)


def row(fields: tuple[bytes, ...] | list[bytes]) -> bytes:
    return struct.pack(">h", len(fields)) + b"".join(fields)


def copy_data(rows: Iterable[bytes]) -> bytes:
    """The whole COPY stream: header, the encoded rows, trailer."""
    return HEADER + b"".join(rows) + TRAILER
