"""Under /api/ every error answer is JSON in the API's shape, also when no view was reached (a
malformed id matches no route; a body Django refuses before the view); other paths get pages."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.api.conftest import key_client

pytestmark = pytest.mark.django_db


def test_a_malformed_id_under_api_v1_is_a_json_404(people, alice_key) -> None:
    response = key_client(alice_key).get("/api/v1/servers/%C2%84/")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json() == {"error": "not-found", "detail": "Not found."}


def test_an_unknown_path_under_api_v1_0_is_a_json_404_in_its_shape(people) -> None:
    response = Client().get("/api/v1.0/no-such-call")
    assert response.status_code == 404 and response.json()["status"] == "not-found"


def test_an_unknown_page_is_still_the_html_page(people) -> None:
    response = Client().get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_a_body_with_too_many_fields_is_a_json_400_under_api_and_a_page_elsewhere(people, alice_key, settings) -> None:
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    fields = {f"f{i}": "x" for i in range(10)}
    response = key_client(alice_key).post("/api/v1/servers/", fields)
    assert response.status_code == 400 and response["Content-Type"] == "application/json", response.content[:200]
    assert response.json()["error"] == "invalid"
    # Positive control: the same caller with a body of few fields gets past the parser.
    assert key_client(alice_key).post("/api/v1/servers/", {"host": "few.example.com"}).status_code == 201
    page = Client().post("/accounts/login/", fields)
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")


def test_a_nul_character_in_a_filter_is_a_400_not_a_server_error(people, alice_key) -> None:
    """Found by schemathesis: PostgreSQL text cannot hold NUL, so the filter failed in the database."""
    client = key_client(alice_key)
    assert client.get("/api/v1/servers/", {"host": "www.example.com"}).status_code == 200  # positive control
    response = client.get("/api/v1/servers/", {"host": "www\x00.example.com"})
    assert response.status_code == 400 and response.json()["error"] == "invalid"


def test_events_since_an_offset_postgresql_cannot_store_still_answers(people, alice_key, lab_issuer) -> None:
    """Found by schemathesis: ISO 8601 allows +23:56, PostgreSQL only up to ±15:59."""
    from tests.api.conftest import make_world

    make_world(people.team_a, people.alice, lab_issuer)
    client = key_client(alice_key)
    # 2000-01-01T23:56+23:56 is 2000-01-01T00:00Z: the world's event (made now) is after it.
    early = client.get("/api/v1/events/", {"since": "2000-01-01T23:56:00+23:56"})
    assert early.status_code == 200 and len(early.json()["results"]) == 1
    late = client.get("/api/v1/events/", {"since": "2999-01-01T23:56:00+23:56"})
    assert late.status_code == 200 and late.json()["results"] == []


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/api/v1/events/", "since"),
        ("/api/v1/certificates/", "expires_after"),
        ("/api/v1/certificates/", "expires_before"),
    ],
)
def test_date_filters_take_any_iso_offset_and_refuse_impossible_dates(people, alice_key, url, name) -> None:
    client = key_client(alice_key)
    assert client.get(url, {name: "5897-09-01T13:04:19.371-19:29"}).status_code == 200
    for bad in ("2026-13-01T00:00:00Z", "yesterday"):
        response = client.get(url, {name: bad})
        assert response.status_code == 400 and name in response.json()["fields"], (bad, response.content[:200])
