"""HSTS in the spot check: one bounded HEAD / to the checked address, against real lab HTTPS."""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from kcproto.hsts import hsts_check, parse_header
from kcproto.tlsprobe import run_sync
from monitors.models import SpotCheck
from monitors.spotcheck import spotcheck

pytestmark = pytest.mark.django_db
FULL = "max-age=31536000; includeSubDomains; preload"


def _check(lab, name: str, port: int, **kwargs) -> dict:  # type: ignore[no-untyped-def]
    return spotcheck(target=f"{name}:{port}", ca_pem=lab.root_pem, **kwargs).as_dict()


def test_the_header_is_reported_with_max_age_and_flags(lab, lab_name, lab_settings) -> None:
    name = lab_name("hsts")
    endpoint = lab.https(lab.leaf([name]), hsts=FULL)
    result = _check(lab, name, endpoint.port, check_hsts=True)
    address = result["addresses"][0]
    assert address["hsts"] == {
        "checked": True,
        "error": "",
        "status": 200,
        "present": True,
        "max_age": 31536000,
        "include_subdomains": True,
        "preload": True,
        "header": FULL,
    }
    assert result["findings"] == []
    # One HEAD / with the checked host in the Host header.
    assert len(endpoint.requests) == 1
    head = endpoint.requests[0].decode()
    assert head.startswith("HEAD / HTTP/1.1\r\n")
    assert f"\r\nHost: {name}:{endpoint.port}\r\n" in head


def test_a_missing_header_is_an_info_finding(lab, lab_name, lab_settings) -> None:
    name = lab_name("nohsts")
    endpoint = lab.https(lab.leaf([name]))
    result = _check(lab, name, endpoint.port, check_hsts=True)
    assert result["addresses"][0]["hsts"]["present"] is False
    assert result["addresses"][0]["hsts"]["status"] == 200
    assert [(f["code"], f["severity"], f["address"]) for f in result["findings"]] == [
        ("hsts_missing", "info", "127.0.0.1")
    ]


def test_no_http_is_sent_off_http_ports_unless_asked(lab, lab_name, lab_settings) -> None:
    name = lab_name("plainport")
    endpoint = lab.https(lab.leaf([name]))
    result = _check(lab, name, endpoint.port)  # an ephemeral port is not an HTTP port
    assert result["addresses"][0]["hsts"] is None
    assert endpoint.requests == []
    assert _check(lab, name, endpoint.port, check_hsts=False)["addresses"][0]["hsts"] is None


def test_a_server_that_never_answers_http_costs_one_bounded_wait(lab, lab_name, lab_settings) -> None:
    name = lab_name("silenthttp")
    endpoint = lab.https(lab.leaf([name]), answer="silent")
    started = time.monotonic()
    found = run_sync(hsts_check("127.0.0.1", endpoint.port, host=name, allow_private=True, deadline_seconds=1.0))
    assert time.monotonic() - started < 2.5
    assert found.error == "timeout" and found.present is False
    # Through the spot check: reported, but no hsts_missing (we do not know it is missing).
    result = _check(lab, name, endpoint.port, check_hsts=True)
    assert result["addresses"][0]["hsts"]["error"] == "timeout"
    assert result["findings"] == []


def test_a_trickling_answer_hits_the_deadline_or_the_byte_cap(lab, lab_name, lab_settings) -> None:
    name = lab_name("tricklehttp")
    endpoint = lab.https(lab.leaf([name]), answer="trickle")
    started = time.monotonic()
    slow = run_sync(hsts_check("127.0.0.1", endpoint.port, host=name, allow_private=True, deadline_seconds=1.0))
    assert slow.error == "timeout"
    assert time.monotonic() - started < 2.5
    capped = run_sync(
        hsts_check("127.0.0.1", endpoint.port, host=name, allow_private=True, deadline_seconds=10.0, max_bytes=30)
    )
    assert capped.error == "too_large"


def test_private_addresses_are_refused_without_the_setting(lab, lab_name) -> None:
    endpoint = lab.https(lab.leaf(["x.keychest.test"]), hsts=FULL)
    found = run_sync(hsts_check("127.0.0.1", endpoint.port, host="x.keychest.test", allow_private=False))
    assert found.error == "target_refused"
    assert endpoint.requests == []


def test_header_directives_are_parsed_case_insensitively() -> None:
    assert parse_header('Max-Age="600" ; INCLUDESUBDOMAINS') == (600, True, False)
    assert parse_header("max-age=abc; preload") == (None, False, True)
    assert parse_header("") == (None, False, False)


def test_spotcheck_json_and_text_show_hsts(lab, lab_name, lab_settings, tmp_path) -> None:
    name = lab_name("hstscli")
    endpoint = lab.https(lab.leaf([name]), hsts="max-age=600")
    ca_file = tmp_path / "root.pem"
    ca_file.write_text(lab.root_pem)
    out = StringIO()
    call_command("spotcheck", f"{name}:{endpoint.port}", "--ca-file", str(ca_file), "--hsts", "--json", stdout=out)
    hsts = json.loads(out.getvalue())["addresses"][0]["hsts"]
    assert hsts["present"] is True and hsts["max_age"] == 600 and hsts["include_subdomains"] is False
    out = StringIO()
    call_command("spotcheck", f"{name}:{endpoint.port}", "--ca-file", str(ca_file), "--hsts", stdout=out)
    assert "HSTS: max-age=600" in out.getvalue()


def test_the_result_page_shows_hsts_escaped(client, lab, lab_name, lab_settings) -> None:
    name = lab_name("hstspage")
    endpoint = lab.https(lab.leaf([name]), hsts='max-age=60; <script>x="1"</script>')
    result = _check(lab, name, endpoint.port, check_hsts=True)
    check = SpotCheck.objects.create(host=result["host"], port=result["port"], protocol="tls", result=result)
    page = client.get(reverse("spotcheck_result", args=[check.uuid])).content.decode()
    assert 'data-testid="hsts"' in page and "max-age 60" in page
    assert "<script>x=" not in page and "&lt;script&gt;" in page
