from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy

from dashboard.formatting import format_html_fast, issuer_cn, optional_url, relative_time
from dashboard.issuers import LETS_ENCRYPT, MANAGED, OTHER, issuer_kind

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


@pytest.mark.parametrize(
    "value",
    [
        '<script>alert("x")</script>&amp;\'"',
        mark_safe("<b>already safe</b>"),
        42,
        None,
        uuid.UUID("12345678-1234-4678-9234-567812345678"),
        gettext_lazy("Remove <b>"),
        mark_safe(gettext_lazy("<i>lazy and safe</i>")),
        "e\u0301 & ü",
    ],
)
def test_format_html_fast_escapes_exactly_as_format_html(value: object) -> None:
    template = '<a title="{}">{}</a>'
    fast = format_html_fast(template, value, value)
    assert fast == format_html(template, value, value)
    assert isinstance(fast, SafeString)
