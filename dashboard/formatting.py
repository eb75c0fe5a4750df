"""Formatting shared by the pages and the rows they build: relative times, badges, links.

The template tags in `dashboard.templatetags.kc` register these; code that renders many rows
(`dashboard.server_rows`) calls them directly.
"""

from __future__ import annotations

import functools
import html
import re
from datetime import datetime, tzinfo
from typing import Any

from django.conf import settings
from django.urls import NoReverseMatch, get_urlconf, reverse
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.html import format_html
from django.utils.safestring import SafeString


def _escape(value: Any) -> str:
    if isinstance(value, Promise):
        value = str(value)
    if hasattr(value, "__html__"):
        return value.__html__()  # type: ignore[no-any-return]
    return html.escape(str(value))


def format_html_fast(template: str, *args: Any) -> SafeString:
    """`format_html` (same escaping, same output) for cells built once per row of a list.

    Django's `escape` and `mark_safe` are wrapped for lazy strings on every call, which is most
    of what `format_html` costs; this escapes with the same `html.escape` underneath.
    """
    return SafeString(template.format(*map(_escape, args)))  # every argument is escaped


_HOST_PARTS = re.compile(r"([.:])")


def host_html(label: str) -> SafeString:
    """A host name (or `host:port`), escaped, that wraps only after a dot or before the port:
    each label is kept whole (`.nw`, no wrapping after its hyphens either)."""
    parts = []
    for part in _HOST_PARTS.split(label):
        if part == ".":
            parts.append(".<wbr>")
        elif part == ":":
            parts.append("<wbr>:")
        elif part:
            parts.append(f'<span class="nw">{_escape(part)}</span>')
    return SafeString("".join(parts))


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return "moments"


def relative_time(value: datetime | None, now: datetime | None = None) -> str:
    """'in 5 days', '3 hours ago', 'just now' (the absolute time goes in a title or beside it)."""
    if value is None:
        return "—"
    now = now or timezone.now()
    delta = (value - now).total_seconds()
    if abs(delta) < 60:
        return "just now"
    return f"in {_span(delta)}" if delta > 0 else f"{_span(delta)} ago"


# Django date formats used by the templates, as strftime (much cheaper per row than |date).
_FORMATS = {"Y-m-d H:i": "%Y-%m-%d %H:%M", "Y-m-d": "%Y-%m-%d"}


def _local(value: datetime, fmt: str, tz: tzinfo | None = None) -> tuple[datetime, str]:
    local = timezone.localtime(value, tz)
    return local, local.strftime(_FORMATS.get(fmt, "%Y-%m-%d %H:%M"))


def when_html(
    value: datetime | None, fmt: str = "Y-m-d H:i", *, now: datetime | None = None, tz: tzinfo | None = None
) -> str:
    """`{% when %}` for code that renders many rows: one `now` and one zone for all of them."""
    if value is None:
        return "—"
    local, text = _local(value, fmt, tz)
    return format_html_fast(
        '<time datetime="{}" title="{} {}">{}</time>',
        value.isoformat(),
        text,
        local.tzname(),
        relative_time(value, now),
    )


def when_abs_html(
    value: datetime | None, fmt: str = "Y-m-d H:i", *, now: datetime | None = None, tz: tzinfo | None = None
) -> str:
    """`{% when_abs %}` for code that renders many rows: one `now` and one zone for all of them."""
    if value is None:
        return "—"
    _, text = _local(value, fmt, tz)
    return format_html_fast(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), relative_time(value, now), text
    )


STATUS_BADGE = {
    "ok": "badge-ok",
    "warning": "badge-warning",
    "error": "badge-error",
    "critical": "badge-critical",
    "down": "badge-critical",
    "expired": "badge-critical",
    "overdue": "badge-error",
    "due": "badge-warning",
    "paused": "",
    "pending": "",
    "info": "",
}


def badge(status: str, label: str | None = None) -> str:
    return format_html('<span class="badge {}">{}</span>', STATUS_BADGE.get(status, ""), label or status)


# The status badges without a label of their own, built once (a list shows one per row).
STATUS_BADGE_HTML = {status: badge(status) for status in STATUS_BADGE}


# Arguments the URL converters in use accept (uuid, sha256 hex), unlikely to occur in a path.
_PLACEHOLDERS = ("00000000-0000-4000-8000-0000000000ee", "e" * 64)


@functools.lru_cache(maxsize=256)
def _url_pattern(urlconf: str, current: Any, name: str, arity: int) -> tuple[str, str]:
    """reverse() once per URL name (with a placeholder argument): pages link many rows."""
    for placeholder in _PLACEHOLDERS if arity else ("",):
        try:
            return reverse(name, args=[placeholder] * arity), placeholder
        except NoReverseMatch:
            continue
    return "", ""


def optional_url(name: str, *args: Any) -> str:
    """The URL of a page another app provides, or "" while that app does not provide it."""
    pattern, placeholder = _url_pattern(settings.ROOT_URLCONF, get_urlconf(), name, len(args))
    if not pattern:
        return ""
    for arg in args:
        pattern = pattern.replace(placeholder, str(arg), 1)
    return pattern


def issuer_cn(issuer: str) -> str:
    """The CN (else O) of an RFC 4514 issuer name, for narrow columns; the full text otherwise."""
    if not issuer:
        return ""
    return _issuer_cn(issuer)


# A team's certificates come from a handful of issuers: lists parse each one once per process.
@functools.lru_cache(maxsize=1024)
def _issuer_cn(issuer: str) -> str:
    parts = dict(part.split("=", 1) for part in issuer.replace("\\,", "\x00").split(",") if "=" in part)
    value = parts.get("CN") or parts.get("O") or issuer
    return value.replace("\x00", ",").strip()
