from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from keychest.dashboard.issuers import LETS_ENCRYPT, MANAGED, OTHER, issuer_kind
from keychest.dashboard.templatetags.kc import issuer_cn, optional_url, relative_time

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_relative_times_read_like_a_person_would_say_them() -> None:
    assert relative_time(NOW + timedelta(days=5, hours=2), NOW) == "in 5 days"
    assert relative_time(NOW - timedelta(hours=3), NOW) == "3 hours ago"
    assert relative_time(NOW + timedelta(seconds=20), NOW) == "just now"
    assert relative_time(NOW + timedelta(days=1), NOW) == "in 1 day"
    assert relative_time(None, NOW) == "—"


def test_optional_url_fills_uuid_and_sha256_arguments_and_is_empty_for_unknown_names() -> None:
    key = uuid.uuid4()
    assert optional_url("server_detail", key) == f"/servers/{key}/"
    digest = "ab" * 32
    assert optional_url("certificate_detail", digest) == f"/certificates/{digest}/"
    assert optional_url("dashboard") == "/dashboard/"
    assert optional_url("no_such_page", key) == ""


def test_issuer_names_and_kinds() -> None:
    assert issuer_cn("CN=R11,O=Let's Encrypt,C=US") == "R11"
    assert issuer_cn("O=Cloudflare\\, Inc.,C=US") == "Cloudflare, Inc."
    assert issuer_kind("CN=R11,O=Let's Encrypt,C=US") == LETS_ENCRYPT
    assert issuer_kind("CN=Cloudflare Inc ECC CA-3,O=Cloudflare\\, Inc.,C=US") == MANAGED
    assert issuer_kind("CN=Amazon RSA 2048 M02,O=Amazon,C=US") == MANAGED
    assert issuer_kind("CN=DigiCert Global G2,O=DigiCert Inc,C=US") == OTHER
