"""ct_logs, ct_ingest, ct_lookup and the beat task, against a real local log."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from certificates.models import CTLog

pytestmark = pytest.mark.django_db(transaction=True)


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_ct_logs_lists_the_configured_logs_and_toggles_them(local_logs) -> None:
    rfc, static = local_logs("rfc6962", "static")
    rows = json.loads(_run("ct_logs", "--json"))
    assert {r["log_id"] for r in rows} == {rfc.log_id, static.log_id}
    assert {r["api"] for r in rows} == {"rfc6962", "static"}
    assert all(r["status"] == "new" and r["enabled"] for r in rows)
    _run("ct_logs", "--disable", rfc.log_id)
    assert not CTLog.objects.get(log_id=rfc.log_id).enabled
    _run("ct_logs", "--enable", rfc.log_id[:12])
    assert CTLog.objects.get(log_id=rfc.log_id).enabled
    text = _run("ct_logs")
    assert "KeyChest Lab static log" in text
    with pytest.raises(CommandError):
        _run("ct_logs", "--disable", "no-such-log")


def test_the_bundled_log_list_is_used_when_none_is_configured(ct_settings) -> None:
    ct_settings.KEYCHEST_CT_LOG_LIST = ""
    rows = json.loads(_run("ct_logs", "--json"))
    assert any("Argon2027h1" in r["description"] for r in rows)
    assert any(r["api"] == "static" and "Sycamore" in r["description"] for r in rows)


def test_ct_ingest_once_catches_up_every_log_and_ct_lookup_finds_the_names(local_logs) -> None:
    rfc, static = local_logs("rfc6962", "static")
    rfc.add_random(150)
    static.add_random(150)
    _run("ct_logs", "--start-at", rfc.log_id, "0")
    _run("ct_logs", "--start-at", static.log_id, "100")
    rfc.add_issuance(rfc.issue(["www.lookup.example", "lookup.example"]))
    static.add_issuance(static.issue(["*.lookup.example"]))
    rfc.publish()
    static.publish()
    out = _run("ct_ingest", "--once")
    assert "caught up" in out
    positions = dict(CTLog.objects.values_list("log_id", "position"))
    assert positions == {rfc.log_id: 152, static.log_id: 152}
    rows = json.loads(_run("ct_lookup", "lookup.example", "--json"))
    assert len(rows) == 2
    assert {tuple(r["names"]) for r in rows} == {("www.lookup.example", "lookup.example"), ("*.lookup.example",)}
    assert all(not r["precertificate"] for r in rows)
    assert "lookup.example" in _run("ct_lookup", "www.lookup.example", "--exact")
    with pytest.raises(CommandError):
        _run("ct_lookup", "not a domain")


def test_ct_ingest_once_gives_up_on_a_log_that_keeps_failing_and_says_so(local_logs) -> None:
    ok, broken = local_logs("rfc6962", "rfc6962")
    ok.add_random(10)
    _run("ct_logs", "--start-at", ok.log_id, "0")
    broken.faults.vanished = True
    out = StringIO()
    with pytest.raises(CommandError, match="not caught up: 1 of 2 logs"):
        call_command("ct_ingest", "--once", "--max-failures", "2", stdout=out)
    text = out.getvalue()
    assert "caught up at 10 of 10" in text and "404" in text and "\ncaught up" not in text
    assert CTLog.objects.get(log_id=ok.log_id).position == 10
    assert CTLog.objects.get(log_id=broken.log_id).consecutive_failures >= 2


def test_a_log_in_back_off_is_reported_as_such_not_as_caught_up(local_logs, ct_settings) -> None:
    ct_settings.KEYCHEST_CT_BACKOFF_SECONDS = 120
    local = local_logs("static")
    local.add_random(20)
    _run("ct_logs", "--start-at", local.log_id, "0")
    local.faults.status_429 = 1
    out = StringIO()
    # One failure, then a back-off of two minutes (at least the log's Retry-After of 1 s): --once
    # cannot wait that long with --max-failures 1, and says what it did not read and why.
    with pytest.raises(CommandError, match=r"not caught up: 1 of 1 logs \(1 backing-off\)"):
        call_command("ct_ingest", "--once", "--max-failures", "1", stdout=out)
    assert "backing off until" in out.getvalue() and "after 1 failure: checkpoint: HTTP 429" in out.getvalue()
    [row] = json.loads(_run("ct_logs", "--json", "--no-sync"))
    assert row["status"] == "backing-off" and row["position"] is None
    assert 60 < row["backoff_seconds_left"] <= 150 and row["last_error"] == "checkpoint: HTTP 429"
    assert "backing off until" in row["summary"] and "HTTP 429" in _run("ct_logs", "--no-sync")
    # Nothing is read while it backs off, and --once says so again rather than "caught up".
    local.add_random(5)
    with pytest.raises(CommandError, match="backing-off"):
        call_command("ct_ingest", "--once", "--max-failures", "1", stdout=StringIO())
    assert CTLog.objects.get(log_id=local.log_id).position is None


def test_no_beat_schedule_reads_the_logs(settings) -> None:
    """The `ct` follower process reads the logs as their heads move; beat does not."""
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert not any("ct_ingest" in task for task in tasks)


def test_the_log_list_can_come_from_a_url(local_logs, ct_settings) -> None:
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path

    local = local_logs("rfc6962")
    folder = Path(ct_settings.KEYCHEST_CT_LOG_LIST).parent
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ct_settings.KEYCHEST_CT_LOG_LIST = f"http://127.0.0.1:{server.server_address[1]}/log_list.json"
        rows = json.loads(_run("ct_logs", "--json"))
        assert [r["log_id"] for r in rows] == [local.log_id]
        ct_settings.KEYCHEST_CT_LOG_LIST = f"http://127.0.0.1:{server.server_address[1]}/missing.json"
        with pytest.raises(CommandError, match="log list"):
            _run("ct_logs")
    finally:
        server.shutdown()
        server.server_close()
