"""Fixtures of the security regression tests: the API tests' real SMTP server, keys and world."""

from __future__ import annotations

from tests.api.conftest import alice_key, lab_issuer, smtp

__all__ = ["alice_key", "lab_issuer", "smtp"]
