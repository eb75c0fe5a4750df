"""CSV and ICS writing: formula injection and ICS escaping of attacker-controlled text."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest

from api.exports import CalendarEvent, csv_cell, csv_render, ics_fold, ics_render, ics_text


@pytest.mark.parametrize("value", ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_cells_a_spreadsheet_would_run_are_defused(value) -> None:
    assert csv_cell(value) == "'" + value


def test_ordinary_cells_are_untouched_and_datetimes_are_utc() -> None:
    assert csv_cell("example.com") == "example.com"
    assert csv_cell(None) == ""
    assert csv_cell(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"


def test_csv_round_trips_through_a_reader() -> None:
    text = csv_render(["host", "issuer"], [["a.example", 'O="Evil, Inc"\nline'], ["=cmd", "x"]])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["host", "issuer"], ["a.example", 'O="Evil, Inc"\nline'], ["'=cmd", "x"]]


def test_ics_text_escapes_separators_and_drops_control_characters() -> None:
    assert ics_text("a,b;c\\d\ne\r\nf\x07") == "a\\,b\\;c\\\\d\\ne\\nf"


def test_no_text_can_inject_a_calendar_property() -> None:
    evil = "x\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:pwned"
    body = ics_render(
        [CalendarEvent(uid="u1", day=date(2026, 3, 1), summary=evil, description=evil)],
        name="t",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert body.count("\r\nBEGIN:VEVENT\r\n") == 1
    assert "\r\nSUMMARY:pwned" not in body
    assert "DTSTART;VALUE=DATE:20260301\r\nDTEND;VALUE=DATE:20260302" in body


def test_long_lines_are_folded_at_75_octets_without_splitting_characters() -> None:
    folded = ics_fold("SUMMARY:" + "é" * 100)
    for line in folded.split("\r\n"):
        assert len(line.encode()) <= 75
    assert folded.replace("\r\n ", "") == "SUMMARY:" + "é" * 100
