"""The lean path of GET /servers/expiration and POST /servers/add (api/fastpath.py) answers
exactly as the DRF views do: same status, body bytes and headers, errors included."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from api.models import Scope
from api.services import apikey_create
from monitors.models import Server

pytestmark = pytest.mark.django_db

# An Accept header the lean path does not take (it wants none, */* or exactly application/json)
# but that DRF still answers with JSON: the reference answer.
VIA_DRF = {"HTTP_ACCEPT": "application/json, */*;q=0.1"}
HEADERS = ("Content-Type", "Allow", "Vary", "WWW-Authenticate", "Retry-After")


def _same(lean, drf) -> None:  # type: ignore[no-untyped-def]
    assert lean.status_code == drf.status_code
    assert lean.content == drf.content
    for name in HEADERS:
        assert lean.get(name) == drf.get(name), name


@pytest.fixture
def secret(people) -> str:
    Server.objects.create(team=people.team_a, host="www.example.com", port=443)
    return apikey_create(team=people.team_a, user=people.alice, scopes=[Scope.READ, Scope.ENROL]).secret


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1.0/servers/expiration/www.example.com",
        "/api/v1.0/servers/expiration/www.example.com:443",
        "/api/v1.0/servers/expiration/unknown.example.com",
        "/api/v1.0/servers/expiration/not a host",
    ],
)
def test_expiration_answers_as_drf(secret, path) -> None:
    client = APIClient()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    _same(client.get(path, **auth), client.get(path, **auth, **VIA_DRF))
    _same(client.get(f"{path}?api_key={secret}"), client.get(f"{path}?api_key={secret}", **VIA_DRF))


@pytest.mark.parametrize("key", ["kc_unknownunknownunknownunknownunknown0000", "short"])
def test_unknown_keys_are_refused_as_drf(people, key) -> None:
    client = APIClient()
    path = "/api/v1.0/servers/expiration/www.example.com"
    lean = client.get(path, HTTP_AUTHORIZATION=f"Bearer {key}")
    _same(lean, client.get(path, HTTP_AUTHORIZATION=f"Bearer {key}", **VIA_DRF))
    assert lean.status_code == 401 and lean.json()["status"] == "not-registered"


def test_throttling_answers_as_drf(secret, settings) -> None:
    settings.KEYCHEST_API_RATE_PER_KEY = 1
    client = APIClient()
    path = "/api/v1.0/servers/expiration/www.example.com"
    assert client.get(path, HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    lean = client.get(path, HTTP_AUTHORIZATION=f"Bearer {secret}")
    drf = client.get(path, HTTP_AUTHORIZATION=f"Bearer {secret}", **VIA_DRF)
    assert lean.status_code == 429 and lean.json()["status"] == "too-many"
    assert lean.content.split(b"available in")[0] == drf.content.split(b"available in")[0]
    assert int(lean["Retry-After"]) > 0 and lean["Content-Type"] == drf["Content-Type"]


@pytest.mark.parametrize("fmt", ["form", "json"])
@pytest.mark.parametrize("domain", ["new.example.com", "www.example.com", "bad host!", ""])
def test_servers_add_answers_as_drf(secret, fmt, domain) -> None:
    client = APIClient()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}

    def post(**extra):  # type: ignore[no-untyped-def]
        if fmt == "json":
            return client.post("/api/v1.0/servers/add", {"domain": domain}, format="json", **auth, **extra)
        return client.post(
            "/api/v1.0/servers/add",
            f"domain={domain}",
            content_type="application/x-www-form-urlencoded",
            **auth,
            **extra,
        )

    lean = post()
    drf = post(**VIA_DRF)  # the second call finds what the first enrolled
    assert lean.status_code == drf.status_code and lean.get("Allow") == drf.get("Allow")
    if domain == "new.example.com":
        assert lean.json()["status"] == "success" and drf.json()["status"] == "already-inserted"
        assert lean.json()["id"] == drf.json()["id"]
    else:
        _same(lean, drf)


def test_the_key_in_a_json_body_is_found_by_the_lean_path(secret) -> None:
    response = APIClient().post(
        "/api/v1.0/servers/add", {"domain": "body.example.com", "api_key": secret}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "success"


def test_a_malformed_json_body_goes_to_drf(secret) -> None:
    response = APIClient().post(
        "/api/v1.0/servers/add", "{not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert response.status_code == 400 and response.json()["status"] == "invalid-request"


def test_plain_requests_take_the_lean_path_and_others_drf(secret, monkeypatch) -> None:
    from api import views_v10

    def drf_was_used(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the DRF view ran")

    monkeypatch.setattr(views_v10.ExpirationView, "get", drf_was_used)
    monkeypatch.setattr(views_v10.ServerAddView, "post", drf_was_used)
    client = APIClient(raise_request_exception=True)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    assert client.get("/api/v1.0/servers/expiration/www.example.com", **auth).status_code == 200
    assert client.get("/api/v1.0/servers/expiration/www.example.com", HTTP_ACCEPT="*/*", **auth).status_code == 200
    form = {"content_type": "application/x-www-form-urlencoded", **auth}
    assert client.post("/api/v1.0/servers/add", "domain=lean.example.com", **form).status_code == 200
    with pytest.raises(AssertionError, match="DRF view ran"):
        client.get("/api/v1.0/servers/expiration/www.example.com", **auth, **VIA_DRF)
