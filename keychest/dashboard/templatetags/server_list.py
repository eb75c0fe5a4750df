"""`{% server_rows servers as rows %}`: the servers list's rows, built in one pass (see server_rows)."""

from __future__ import annotations

from typing import Any

from django import template

from keychest.dashboard.server_rows import ServerRow
from keychest.dashboard.server_rows import server_rows as build_rows

register = template.Library()


@register.simple_tag
def server_rows(servers: list[Any]) -> list[ServerRow]:
    return build_rows(servers)
