"""Certificate store: certificates by SHA-256, the global name table, CT ingestion."""

from __future__ import annotations
