"""CSV and ICS exports and the secret calendar address."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.test import Client

from api.models import CalendarFeed
from monitors.models import ScanResult
from tests.api.conftest import key_client

pytestmark = pytest.mark.django_db


def test_servers_csv_lists_every_address_and_defuses_formulas(alice_client, world) -> None:
    ScanResult.objects.filter(pk=world.result.pk).update(issuer='=HYPERLINK("http://evil","x")')
    response = alice_client.get("/api/v1/exports/servers.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows[0]["host"] == "www.example.com" and rows[0]["address"] == "192.0.2.1"
    assert rows[0]["issuer"].startswith("'=")


def test_certificates_csv(alice_client, world) -> None:
    rows = list(csv.DictReader(io.StringIO(alice_client.get("/api/v1/exports/certificates.csv").content.decode())))
    sources = {r["sha256"]: r["sources"] for r in rows}
    assert sources == {world.certificate_sha256: "scan", world.uploaded_sha256: "upload", world.ct_sha256: "ct"}


def test_the_calendar_has_one_renewal_entry_per_server_certificate(alice_client, world) -> None:
    body = alice_client.get("/api/v1/exports/calendar.ics").content.decode()
    assert body.startswith("BEGIN:VCALENDAR\r\n")
    assert body.count("SUMMARY:Renew the certificate of") == 1
    renewal = world.result.renewal_at().date()
    assert f"DTSTART;VALUE=DATE:{renewal:%Y%m%d}" in body
    assert "SUMMARY:Renew the certificate of www.example.com:443" in body


def test_uploaded_certificates_get_a_renewal_entry_too(alice_client, world) -> None:
    body = alice_client.get("/api/v1/exports/calendar.ics").content.decode()
    # (the calendar above counted server entries only by their summary)
    assert "SUMMARY:Renew the uploaded certificate CN=upload.example.com" in body
    assert body.count("BEGIN:VEVENT") == 2


def test_keys_read_exports_too(world, people) -> None:
    from api.services import apikey_create

    secret = apikey_create(team=people.team_a, user=people.alice, scopes=["read"]).secret
    assert key_client(secret).get("/api/v1/exports/servers.csv").status_code == 200


def test_the_secret_calendar_address_works_without_login_and_can_be_rotated(alice_client, world) -> None:
    page = alice_client.get("/settings/api-keys/").content.decode()
    url = re.search(r"(http://[^<\s]+/api/v1/calendar/[^<\s]+\.ics)", page).group(1)
    path = url.split("127.0.0.1:8000", 1)[1]
    feed = Client().get(path)
    assert feed.status_code == 200 and b"Renew the certificate of www.example.com:443" in feed.content
    assert alice_client.get("/api/v1/exports/calendar-url").json()["url"] == url
    alice_client.post("/settings/calendar/rotate/")
    assert Client().get(path).status_code == 404
    assert CalendarFeed.objects.count() == 1


def test_charlie_exports_hold_nothing_of_team_a(charlie_client, world) -> None:
    assert b"www.example.com" not in charlie_client.get("/api/v1/exports/servers.csv").content
    assert world.certificate_sha256.encode() not in charlie_client.get("/api/v1/exports/certificates.csv").content
    assert b"BEGIN:VEVENT" not in charlie_client.get("/api/v1/exports/calendar.ics").content
    feed_url = charlie_client.get("/api/v1/exports/calendar-url").json()["url"]
    assert b"www.example.com" not in Client().get(feed_url.split("127.0.0.1:8000", 1)[1]).content


def test_anonymous_exports_are_refused(client, world) -> None:
    assert client.get("/api/v1/exports/servers.csv").status_code == 401
    assert client.get("/api/v1/calendar/not-a-token.ics").status_code == 404
