"""The hottest v1.0 calls — GET /servers/expiration and POST /servers/add — answer with exactly
the bytes, statuses and headers scripts have always received (pinned from the answers of the
former lean path, api/fastpath.py, before it was removed: issue 20), errors included."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from api.models import Scope
from api.services import apikey_create
from monitors.models import Server

pytestmark = pytest.mark.django_db

HEADERS = ("Content-Type", "Allow", "Vary", "WWW-Authenticate", "Retry-After")
GET = {"Content-Type": "application/json", "Allow": "GET, HEAD, OPTIONS", "Vary": "Accept, Cookie"}
POST = {"Content-Type": "application/json", "Allow": "POST, OPTIONS", "Vary": "Accept, Cookie"}
BEARER = {"WWW-Authenticate": 'Bearer realm="KeyChest API"'}
# Accept values scripts send; the answer is the same JSON for each.
ACCEPTS = [{}, {"HTTP_ACCEPT": "*/*"}, {"HTTP_ACCEPT": "application/json"}, {"HTTP_ACCEPT": "application/json, */*"}]
NOT_WATCHED = b'{"status":"success","domain":"www.example.com","pending":false,"certificate_found":false,"renewal_due":false,"expired_found":false,"results":[]}'


def _exactly(response, status: int, body: bytes, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    assert (response.status_code, response.content) == (status, body)
    assert {name: response.get(name) for name in HEADERS} == {name: headers.get(name) for name in HEADERS}


@pytest.fixture
def secret(people) -> str:
    Server.objects.create(team=people.team_a, host="www.example.com", port=443)
    return apikey_create(team=people.team_a, user=people.alice, scopes=[Scope.READ, Scope.ENROL]).secret


@pytest.mark.parametrize(
    ("target", "status", "body"),
    [
        ("www.example.com", 200, NOT_WATCHED),
        ("www.example.com:443", 200, NOT_WATCHED),
        ("unknown.example.com", 404, b'{"status":"not-found","detail":"this team does not watch that server"}'),
        (
            "not a host",
            400,
            "\u201cnot a host\u201d has a space in it; a host name has none (enter one name per line)",
        ),
    ],
)
@pytest.mark.parametrize("accept", ACCEPTS)
def test_expiration_answers_as_always(secret, target, status, body, accept) -> None:
    if isinstance(body, str):  # a refusal in words (issue 14): its detail, as UTF-8 JSON
        body = b'{"status":"invalid-domain","detail":"' + body.encode() + b'"}'
    client = APIClient()
    path = f"/api/v1.0/servers/expiration/{target}"
    _exactly(client.get(path, HTTP_AUTHORIZATION=f"Bearer {secret}", **accept), status, body, GET)
    _exactly(client.get(f"{path}?api_key={secret}", **accept), status, body, GET)


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        ("Bearer kc_unknownunknownunknownunknownunknown0000", b"Unknown, revoked or expired API key."),
        ("Bearer short", b"Unknown, revoked or expired API key."),
        ("Basic !!!", b"Malformed Basic authorization header."),
        ("", b"Authentication credentials were not provided."),
    ],
)
def test_refused_keys_answer_as_always(people, authorization, detail) -> None:
    response = APIClient().get("/api/v1.0/servers/expiration/www.example.com", HTTP_AUTHORIZATION=authorization)
    _exactly(response, 401, b'{"status":"not-registered","detail":"' + detail + b'"}', {**GET, **BEARER})


def test_throttling_answers_as_always(secret, settings) -> None:
    settings.KEYCHEST_API_RATE_PER_KEY = 1
    client = APIClient()
    path = "/api/v1.0/servers/expiration/www.example.com"
    assert client.get(path, HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 429
    assert response.content.startswith(b'{"status":"too-many","detail":"Request was throttled. Expected available in ')
    assert int(response["Retry-After"]) > 0
    assert {name: response.get(name) for name in HEADERS[:3]} == GET


def _post(client: APIClient, fmt: str, domain: str, secret: str):  # type: ignore[no-untyped-def]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    if fmt == "json":
        return client.post("/api/v1.0/servers/add", {"domain": domain}, format="json", **auth)
    return client.post(
        "/api/v1.0/servers/add", f"domain={domain}", content_type="application/x-www-form-urlencoded", **auth
    )


@pytest.mark.parametrize("fmt", ["form", "json"])
def test_servers_add_answers_as_always(people, secret, fmt) -> None:
    client = APIClient()
    response = _post(client, fmt, "new.example.com", secret)
    new = Server.objects.get(team=people.team_a, host="new.example.com")
    # `id` and `key` in every answer, as the original service gave them (issue 14, item 14)
    watched = b'","key":"new.example.com:443","domain":"new.example.com","port":443,"pending":false}'
    _exactly(response, 200, b'{"status":"success","id":"' + str(new.uuid).encode() + watched, POST)
    again = _post(client, fmt, "new.example.com", secret)
    _exactly(again, 200, b'{"status":"already-inserted","id":"' + str(new.uuid).encode() + watched, POST)
    bad = (
        b'{"status":"invalid-domain","detail":"'
        + "\u201cbad host!\u201d has a space in it; a host name has none (enter one name per line)".encode()
        + b'"}'
    )
    _exactly(_post(client, fmt, "bad host!", secret), 400, bad, POST)
    required = b'{"status":"invalid-domain","detail":"domain is required"}'
    _exactly(_post(client, fmt, "", secret), 400, required, POST)


def test_the_key_in_a_json_body_is_found(secret) -> None:
    response = APIClient().post(
        "/api/v1.0/servers/add", {"domain": "body.example.com", "api_key": secret}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "success"


def test_a_malformed_json_body_answers_as_always(secret) -> None:
    response = APIClient().post(
        "/api/v1.0/servers/add", "{not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    body = b'{"status":"invalid-request","detail":"JSON parse error - Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"}'
    _exactly(response, 400, body, POST)


def test_other_methods_answer_as_always(secret) -> None:
    client = APIClient()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    _exactly(
        client.post("/api/v1.0/servers/expiration/www.example.com", **auth),
        405,
        b'{"status":"not-allowed","detail":"Method \\"POST\\" not allowed."}',
        GET,
    )
    _exactly(
        client.get("/api/v1.0/servers/add", **auth),
        405,
        b'{"status":"not-allowed","detail":"Method \\"GET\\" not allowed."}',
        POST,
    )
