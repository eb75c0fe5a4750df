"""Deeply nested JSON is a 400, never a 500 (security finding 10), on every body parser:
DRF's JSON parser (v1 and the v1.0 views), whatever the Accept header."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from api.models import Scope
from api.services import apikey_create

pytestmark = pytest.mark.django_db

DEEP = "[" * 200_000
# Deep but balanced and otherwise well-formed: only the depth is wrong.
DEEP_BALANCED = '{"domain": ' + "[" * 5_000 + "]" * 5_000 + "}"
ACCEPT_LIST = {"HTTP_ACCEPT": "application/json, */*;q=0.1"}


@pytest.fixture
def key(people) -> str:
    return apikey_create(team=people.team_a, user=people.alice, scopes=[Scope.READ, Scope.ENROL, Scope.MANAGE]).secret


def _post(client: APIClient, path: str, body: str, **extra: str):  # type: ignore[no-untyped-def]
    return client.generic("POST", path, body.encode(), content_type="application/json", **extra)


@pytest.mark.parametrize("body", [DEEP, DEEP_BALANCED])
def test_nested_json_to_the_claim_is_a_400(people, body) -> None:
    response = _post(APIClient(), "/api/v1.0/access/claim", body)
    assert response.status_code == 400


@pytest.mark.parametrize("body", [DEEP, DEEP_BALANCED])
@pytest.mark.parametrize("extra", [{}, ACCEPT_LIST], ids=["no-accept", "accept-list"])
def test_nested_json_to_v10_servers_add_is_a_400(key, body, extra) -> None:
    client = APIClient()
    response = _post(client, "/api/v1.0/servers/add", body, HTTP_AUTHORIZATION=f"Bearer {key}", **extra)
    assert response.status_code == 400


@pytest.mark.parametrize("body", [DEEP, DEEP_BALANCED])
def test_nested_json_to_v1_servers_is_a_400(key, body) -> None:
    client = APIClient()
    response = _post(client, "/api/v1/servers/", body, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 400
    assert response.json()["error"] == "parse-error"


def test_ordinary_nesting_still_parses(key) -> None:
    client = APIClient()
    body = '{"domain": "www.example.com", "tags": ["a", "b"], "x": {"y": {"z": [[1], [2]]}}}'
    response = _post(client, "/api/v1.0/servers/add", body, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200, response.content
