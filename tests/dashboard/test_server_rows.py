from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.template import Context, Template
from django.utils import timezone

from dashboard.server_rows import server_rows
from monitors.models import Server
from monitors.pages import server_status, servers_annotated
from tests.dashboard.factories import CLOUDFLARE, DIGICERT, finding, server_with_certificate

NOW = datetime(2026, 6, 1, 9, 30, 17, tzinfo=UTC)
D = timedelta(days=1)
HOSTILE = '<script>alert("x")</script>&amp;\'"'

# The cells as the page's template rendered them per row with the generic tags, before the rows
# were built in one pass: the builder must keep every byte of it.
GENERIC = Template(
    "{% load kc %}"
    '{% server_link s %}|{% badge s.status %}|{% if s.expires_at %}{% when_abs s.expires_at "Y-m-d" %}'
    ' <span class="muted">({{ s.expires_at|relative }})</span>{% else %}—{% endif %}'
    '|{{ s.issuer_name|issuer_cn|truncatechars:40|default:"—" }}|{% when s.last_scan_at %}'
    '|{% for t in s.tags %}<span class="tag">{{ t }}</span>{% endfor %}'
    "|{% url 'server_list_pause' s.uuid %}|{% url 'server_list_remove' s.uuid %}"
    "|{{ s.host }}|{{ s.label }}|{% if s.paused %}Resume{% else %}Pause{% endif %}"
)
BUILT = Template(
    "{{ r.link_html }}|{{ r.status_html }}|{{ r.expires_html }}|{{ r.issuer }}|{{ r.last_scan_html }}"
    "|{{ r.tags_html }}|{{ r.pause_url }}|{{ r.remove_url }}|{{ r.host }}|{{ r.label }}|{{ r.pause_label }}"
)


def _listed(team) -> list[Server]:  # type: ignore[no-untyped-def]
    """The servers as the list view hands them to its template."""
    servers = list(servers_annotated(team).order_by("host", "port", "id"))
    for server in servers:
        server.status = server_status(server)  # type: ignore[attr-defined]
    return servers


def _varied_team(team) -> None:  # type: ignore[no-untyped-def]
    issuers = [
        CLOUDFLARE,
        DIGICERT,  # its CN is 42 characters: truncated
        f"CN={HOSTILE},O=x",
        "",
        "CN=" + "e\u0301" * 45,  # 45 letters with combining accents: 90 code points, truncated
        "CN=" + "e\u0301" * 20,  # 40 code points, 20 letters: kept
        "CN=" + "x" * 40,
        "CN=" + "y" * 41,
    ]
    for i, issuer in enumerate(issuers):
        host = f"h{i}.example.com" if i % 3 else f"2001:db8::{i}"
        server = server_with_certificate(
            team, host, expires_in=(i * 37 - 30) * D, issuer=issuer, port=443 if i % 2 else 465, now=NOW - i * D
        )
        Server.objects.filter(pk=server.pk).update(
            tags=[["prod", HOSTILE], [], ["x" * 30]][i % 3], protocol="smtp" if i == 3 else "tls", paused=i == 5
        )
        if i % 2:
            finding(server, "connect_failed" if i == 1 else "legacy_tls", severity="warning")
    Server.objects.create(team=team, host="pending.example.com", tags=["new"])
    Server.objects.create(team=team, host=f"{HOSTILE}.example.com", last_scan_at=NOW - 3 * D)


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ["UTC", "Europe/Prague", "Asia/Kolkata"])
def test_each_cell_is_what_the_generic_tags_render(people, zone: str) -> None:
    _varied_team(people.team_a)
    with time_machine.travel(NOW, tick=False), timezone.override(zoneinfo.ZoneInfo(zone)):
        servers = _listed(people.team_a)
        rows = server_rows(servers)
        assert len(rows) == len(servers) == 10
        for server, row in zip(servers, rows, strict=True):
            assert BUILT.render(Context({"r": row})) == GENERIC.render(Context({"s": server}))


@pytest.mark.django_db
def test_hostile_text_stays_escaped_in_every_cell(people) -> None:
    _varied_team(people.team_a)
    with time_machine.travel(NOW, tick=False):
        html = "".join(BUILT.render(Context({"r": row})) for row in server_rows(_listed(people.team_a)))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp;&#x27;&quot;" in html


@pytest.mark.django_db
def test_building_the_rows_runs_no_query(people, django_assert_num_queries) -> None:
    _varied_team(people.team_a)
    servers = _listed(people.team_a)
    with django_assert_num_queries(0):
        rows = server_rows(servers)
    assert [row["host"] for row in rows] == [server.host for server in servers]
