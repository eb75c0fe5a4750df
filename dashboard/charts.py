"""Server-rendered SVG geometry for the renewal calendar (no chart library, no script)."""

from __future__ import annotations

from dataclasses import dataclass

from dashboard.issuers import KINDS
from dashboard.selectors import CalendarMonth

WIDTH = 720
HEIGHT = 220
TOP = 16
BOTTOM = 28
LEFT = 8


@dataclass
class Bar:
    kind: str
    x: float
    y: float
    width: float
    height: float
    count: int


@dataclass
class Column:
    label: str
    total: int
    x: float
    label_x: float
    total_y: float
    bars: list[Bar]


def calendar_columns(months: list[CalendarMonth]) -> list[Column]:
    """Stacked bars, one column per month, scaled to the busiest month."""
    peak = max((month.total for month in months), default=0) or 1
    plot = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT) / max(len(months), 1)
    bar_width = slot * 0.62
    columns = []
    for index, month in enumerate(months):
        x = LEFT + index * slot + (slot - bar_width) / 2
        y = float(HEIGHT - BOTTOM)
        bars = []
        for kind in KINDS:
            count = month.counts.get(kind, 0)
            if not count:
                continue
            height = plot * count / peak
            y -= height
            bars.append(
                Bar(
                    kind=kind,
                    x=round(x, 1),
                    y=round(y, 1),
                    width=round(bar_width, 1),
                    height=round(height, 1),
                    count=count,
                )
            )
        columns.append(
            Column(
                label=month.start.strftime("%b %Y")
                if month.start.month == 1 or index == 0
                else month.start.strftime("%b"),
                total=month.total,
                x=round(x, 1),
                label_x=round(x + bar_width / 2, 1),
                total_y=round(y - 4, 1),
                bars=bars,
            )
        )
    return columns
