"""Template helpers shared by every page: relative times, status badges, query strings.

The formatting itself lives in `dashboard.formatting` (plain functions that row builders call
too); this module registers it with the template engine.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString

from dashboard.formatting import (
    STATUS_BADGE,
    STATUS_BADGE_HTML,
    badge,
    format_html_fast,
    host_html,
    issuer_cn,
    optional_url,
    relative_time,
    when_abs_html,
    when_html,
)

__all__ = ["STATUS_BADGE", "STATUS_BADGE_HTML", "format_html_fast", "relative_time"]

register = template.Library()
register.simple_tag(badge)
register.simple_tag(optional_url)
register.filter(issuer_cn)


@register.filter
def relative(value: datetime | None) -> str:
    return relative_time(value)


@register.simple_tag
def when(value: datetime | None, fmt: str = "Y-m-d H:i") -> str:
    """A <time> element: relative text, the absolute local time as its title and datetime."""
    return when_html(value, fmt)


@register.simple_tag
def when_abs(value: datetime | None, fmt: str = "Y-m-d H:i") -> str:
    """The absolute local time, with the relative time as its title."""
    return when_abs_html(value, fmt)


@register.filter
def days_left(value: datetime | None) -> str:
    if value is None:
        return "—"
    days = (value - timezone.now()) / timedelta(days=1)
    return f"{days:.0f}" if abs(days) >= 1 else f"{days:.1f}"


@register.simple_tag(takes_context=True)
def query(context: dict[str, Any], **changes: Any) -> str:
    """The current query string with some parameters changed (None or "" removes one)."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key, "") if mapping else ""


@register.simple_tag
def certificate_link(sha256: str) -> str:
    return optional_url("certificate_detail", sha256) if sha256 else ""


@register.simple_tag
def server_link(server: Any) -> str:
    """The server's label, linked to its detail page (escaped: the host comes from users)."""
    url = optional_url("server_detail", server.uuid)
    name = host_html(server.label)  # escaped, with line-break chances between labels
    if not url:
        return format_html('<span class="server">{}</span>', name)
    return format_html('<a class="server" href="{}">{}</a>', url, name)


_HASH = re.compile(r"\b[0-9a-f]{12,64}\b")


@register.filter
def hash_links(text: str) -> SafeString:
    """Text (escaped) whose certificate fingerprints, whole or shortened to 12+ hex digits,
    link to the certificate's page (`certificate_by_prefix` resolves the short ones)."""
    escaped = conditional_escape(text or "")
    base = optional_url("certificate_list")
    if not base:
        return SafeString(escaped)
    return SafeString(
        _HASH.sub(lambda m: f'<a class="hash" href="{base}{m.group(0)}/"><code>{m.group(0)}</code></a>', escaped)
    )
