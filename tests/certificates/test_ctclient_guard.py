"""The CT client and the log-list fetch against a hostile log (issue 22, item 9): no redirect to a
non-public address, a byte cap read no further than the cap, one deadline a trickle cannot
stretch; and connections to an honest log still kept alive."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from certificates.ctclient import LogUnavailable, client_for
from certificates.ingest import spec_of
from certificates.loglist import LogListError, load_log_list
from kcproto import netguard
from kcproto.ctformat import FormatError
from tests.certificates.helpers import db_log, ingest

pytestmark = pytest.mark.django_db(transaction=True)
MB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def public_lab_address(monkeypatch: pytest.MonkeyPatch) -> str:
    """This sandbox has no public address to run a log on: 127.0.0.2 plays one (a log on the
    internet). Every other address keeps its real class, so 127.0.0.1 stays loopback."""
    real = netguard.classify
    monkeypatch.setattr(netguard, "classify", lambda ip: None if str(ip) == "127.0.0.2" else real(ip))
    return "127.0.0.2"


class _Canary:
    """An HTTP server on 127.0.0.1 standing for the metadata service: it counts who reached it."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canary.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/latest/meta-data/"


@pytest.fixture
def canary() -> Iterator[_Canary]:
    running = _Canary()
    yield running
    running.server.shutdown()
    running.server.server_close()


def _client(local, settings, **kwargs: Any):  # type: ignore[no-untyped-def]
    log = db_log(local, start=None)
    return client_for(spec_of(log), allow_private=settings.KEYCHEST_ALLOW_PRIVATE_TARGETS, **kwargs)


@pytest.mark.parametrize("api", ["rfc6962", "static"])
def test_a_redirect_to_a_private_address_is_not_followed(
    local_logs, ct_settings, public_lab_address: str, canary: _Canary, api: str
) -> None:
    local = local_logs(api, host=public_lab_address)
    local.add_random(10)
    ct_settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    client = _client(local, ct_settings)
    assert client.tree_head().size == 10  # the "public" log itself is reachable
    local.faults.redirect_to = canary.url
    with pytest.raises(LogUnavailable, match="non-public address"):
        client.tree_head()
    # Through ingestion too: the log backs off, saying why; the metadata service heard nothing.
    log = db_log(local, start=None)
    result = ingest(log)
    assert "refused" in result.error and "loopback" in result.error
    log.refresh_from_db()
    assert log.backoff_until is not None and "non-public" in log.last_error
    assert canary.hits == []
    # The guard is what stopped it: where private targets are allowed the redirect is followed.
    ct_settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
    with pytest.raises(FormatError):  # the canary's "{}" is no tree head
        _client(local, ct_settings).tree_head()
    assert canary.hits == ["/latest/meta-data/"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_400_mb_answer_is_cut_at_the_cap_without_reading_it_all(local_logs, ct_settings, chunked: bool) -> None:
    local = local_logs("rfc6962")
    local.add_random(5)
    client = _client(local, ct_settings, max_bytes=1 * MB)
    local.faults.oversized, local.faults.oversized_chunked = 400 * MB, chunked
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(LogUnavailable, match="cap"):
            client.tree_head()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 8 * MB  # the cap (1 MB), its copies and buffers; never the answer
    time.sleep(0.2)  # let the server notice the hang-up
    # Announced as 400 MB: refused before reading; chunked: read up to the cap, then hung up.
    # What the server managed to push is whatever the sockets' buffers took, nowhere near 400 MB.
    assert local.oversized_sent < 40 * MB


def test_a_trickling_log_cannot_hold_a_request_past_the_deadline(local_logs, ct_settings) -> None:
    local = local_logs("rfc6962")
    local.add_random(5)
    client = _client(local, ct_settings, timeout=2)
    # One byte every 1.5 s, status line and headers included: each read returns well within any
    # per-read timeout, so only a deadline for the whole request ends it.
    local.faults.trickle_seconds = 1.5
    started = time.monotonic()
    with pytest.raises(LogUnavailable, match=r"too long|timed out"):
        client.tree_head()
    assert time.monotonic() - started < 3.0


def test_a_log_list_at_a_private_address_is_refused(local_logs, ct_settings, canary: _Canary) -> None:
    ct_settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(LogListError, match="non-public"):
        load_log_list(canary.url, timeout=2, allow_private=False)
    assert canary.hits == []


def test_a_log_list_redirecting_to_a_private_address_is_refused(public_lab_address: str, canary: _Canary) -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", canary.url)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((public_lab_address, 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(LogListError, match="non-public"):
            load_log_list(f"http://{public_lab_address}:{server.server_address[1]}/log_list.json", allow_private=False)
    finally:
        server.shutdown()
        server.server_close()
    assert canary.hits == []


@pytest.mark.parametrize("api", ["rfc6962", "static"])
def test_connections_to_a_log_are_kept_alive(local_logs, ct_settings, api: str) -> None:
    local = local_logs(api, max_batch=64)
    local.add_random(1500)
    log = db_log(local)
    assert ingest(log).caught_up
    # Hundreds of requests (batches of 64, tiles of 256, proofs), over a handful of connections:
    # at most the parallel fetches of one chunk and of the chunk prefetched beside it.
    assert len(local.requests) > 20
    assert local.connections <= 2 * ct_settings.KEYCHEST_CT_PARALLEL + 1


@pytest.mark.parametrize("module", ["keychest.settings", "keychest.settings_test"])
def test_private_targets_are_refused_unless_a_deployment_allows_them(module: str) -> None:
    """The CT lab logs listen on loopback: their fixtures (`ct_settings`, `lab_settings`) allow
    private targets for the test that needs them. Neither the deployment default nor the test
    settings do, so the guard above is what every other test and every deployment runs with."""
    env = {k: v for k, v in os.environ.items() if k not in ("KEYCHEST_ALLOW_PRIVATE_TARGETS", "DJANGO_SETTINGS_MODULE")}
    env.update(DJANGO_SETTINGS_MODULE=module, DEBUG="1", SECRET_KEY="x" * 50)
    code = "import django; django.setup(); from django.conf import settings; print(settings.KEYCHEST_ALLOW_PRIVATE_TARGETS)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
