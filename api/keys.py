"""API key strings: generation, hashing and the format rules. No Django imports."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

PREFIX = "kc_"
_ALPHABET = string.ascii_letters + string.digits
# Client-chosen keys of the v1.0 claim call: 16-64 characters of [A-Za-z0-9-].
CLIENT_KEY_RE = re.compile(r"^[A-Za-z0-9-]{16,64}$")
# Server-made keys: kc_ + 8 (the public prefix) + 32 (the secret).
SERVER_KEY_RE = re.compile(r"^kc_[A-Za-z0-9]{8}[A-Za-z0-9]{32}$")


def key_generate() -> str:
    """A new key: `kc_` + 8 + 32 random alphanumerics (about 238 bits)."""
    return PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(40))


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_is_well_formed(key: str) -> bool:
    return bool(CLIENT_KEY_RE.match(key) or SERVER_KEY_RE.match(key))


def key_display_prefix(key: str) -> str:
    """What people see to recognise a key; short enough to reveal little of a client-chosen one."""
    if SERVER_KEY_RE.match(key):
        return key[: len(PREFIX) + 8]
    return key[:4]
