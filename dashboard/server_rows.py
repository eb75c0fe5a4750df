"""The rows of the servers list, built in one pass before the template loops over them.

A page shows 50 servers, and per-row template tags, filters and `{% url %}` cost more than the
page's SQL (bench/README.md, servers list). Here each cell is computed once per row with one
`now`, one time zone and one reversed URL per route; the template only places the values.
Plain strings (host, label, issuer: text from users, certificates and remote servers) stay
plain, so the template escapes them; the cells given as HTML are built with `format_html_fast`
(`format_html`'s escaping), which escapes every value it places.

Rows are dicts, not objects: the template engine tries `row[key]` before `getattr`, and a
failed subscript raises and catches an exception per cell.

The list view loads only the columns read here (`monitors.pages.ROW_FIELDS`): reading another
field of a server would cost a query per row.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any, TypedDict

from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import get_language

from dashboard.formatting import (
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
from kcproto.checks import CODES

# Stands for a server's UUID in a URL reversed once per page; no route contains it.
_UUID = "00000000-0000-4000-8000-0000000000ee"
ISSUER_WIDTH = 40


class ServerRow(TypedDict):
    """One server of the list, its cells ready to place (`*_html` are escaped already)."""

    host: str
    label: str
    pause_label: str
    link_html: str
    status_html: str
    expires_html: str
    issuer: str
    why: str
    last_scan_html: str
    tags_html: str
    pause_url: str
    remove_url: str


@functools.lru_cache(maxsize=1024)
def issuer_cell(issuer: str, language: str | None) -> str:
    """`issuer|issuer_cn|truncatechars:40|default:"—"`, once per issuer (a team has a handful).

    `language` (the active one) is part of the cache key only: Truncator's ellipsis is translated.
    """
    # Always through Truncator, as the filter does: it also puts short text in NFC form.
    text = Truncator(issuer_cn(issuer)).chars(ISSUER_WIDTH)
    return text or "—"


def _expires_cell(expires_at: datetime | None, now: datetime, tz: tzinfo) -> str:
    if not expires_at:
        return "—"
    return format_html_fast(
        '{} <span class="muted">({})</span>',
        when_abs_html(expires_at, "Y-m-d", now=now, tz=tz),
        relative_time(expires_at, now),
    )


def _tags_cell(tags: Iterable[Any]) -> str:
    # Each tag is escaped by format_html_fast; joining escaped pieces keeps them escaped.
    return SafeString("".join([format_html_fast('<span class="tag">{}</span>', tag) for tag in tags]))


def why_text(server: Any) -> str:
    """The status's reason in the words of kcproto.checks.CODES ("Nothing accepts connections on
    the port (192.0.2.1)"), or what the server waits for."""
    if server.paused:
        return "Paused: not scanned until resumed"
    if server.last_scan_at is None:
        return "Waiting for its first scan"
    code = getattr(server, "why_code", None)
    if not code:
        return ""
    words = CODES[code][1] if code in CODES else code.replace("_", " ")
    address = getattr(server, "why_address", "") or ""
    return f"{words} ({address})" if address else words


def server_rows(servers: Iterable[Any], *, now: datetime | None = None, tz: tzinfo | None = None) -> list[ServerRow]:
    """The list's rows for servers from `servers_annotated` with `status` set (as the view does)."""
    now = now or timezone.now()
    tz = tz or timezone.get_current_timezone()
    language = get_language()
    detail = optional_url("server_detail", _UUID)
    pause = reverse("server_list_pause", args=[_UUID])
    remove = reverse("server_list_remove", args=[_UUID])
    rows = []
    for server in servers:
        key = str(server.uuid)
        label = server.label
        name = host_html(label)  # escaped already: placed as it is
        if detail:
            opening = format_html_fast('<a class="server" href="{}">', detail.replace(_UUID, key))
            link = SafeString(opening + name + "</a>")  # both parts escaped already
        else:
            link = SafeString('<span class="server">' + name + "</span>")
        rows.append(
            ServerRow(
                host=server.host,
                label=label,
                pause_label="Resume" if server.paused else "Pause",
                link_html=link,
                status_html=STATUS_BADGE_HTML.get(server.status) or badge(server.status),
                expires_html=_expires_cell(server.expires_at, now, tz),
                issuer=issuer_cell(server.issuer_name or "", language),
                why=why_text(server),
                last_scan_html=when_html(server.last_scan_at, now=now, tz=tz),
                tags_html=_tags_cell(server.tags or ()),
                pause_url=pause.replace(_UUID, key),
                remove_url=remove.replace(_UUID, key),
            )
        )
    return rows
