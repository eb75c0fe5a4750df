"""schemathesis against the OpenAPI schema: no server error anywhere, and every answer conforms
to the schema (status code, content type, body).

Runs in-process over WSGI against the test database after a team A world (servers, results,
findings, ...) was made, so generated ids sometimes hit real rows: once as alice with a full
key, once as charlie (team B, a world of his own) whose answers must never carry team A's things.
Hypothesis draws a fresh seed every run (no derandomize); a failure prints the example and the
`@reproduce_failure` line that replays it. KEYCHEST_FUZZ_EXAMPLES sets the examples per operation.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from keychest.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
# The claim routes send emails and count toward global limits; their behaviour is tested in
# test_claim_flow, here they would only burn the limits.
schema = schema.exclude(path_regex=r"^/api/v1\.0/access/claim")


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Calling the WSGI app directly fires request_finished, whose close_old_connections would
    close PostgreSQL's connection mid-test (autocommit is off inside the test transaction);
    Django's own test client disconnects it the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


EXAMPLES = int(os.environ.get("KEYCHEST_FUZZ_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def worlds(people, lab_issuer, settings):
    from tests.api.conftest import make_world

    settings.KEYCHEST_API_RATE_PER_KEY = 1_000_000
    settings.KEYCHEST_API_RATE_PER_IP = 1_000_000
    team_a = make_world(people.team_a, people.alice, lab_issuer)
    make_world(people.team_b, people.charlie, lab_issuer, domain="example.net")
    return team_a


def _key(team, user) -> str:
    from api.services import apikey_create

    return apikey_create(team=team, user=user, scopes=["read", "enrol", "manage"]).secret


@pytest.fixture
def full_key(people, worlds) -> str:
    return _key(people.team_a, people.alice)


@pytest.fixture
def charlie_full_key(people, worlds) -> str:
    return _key(people.team_b, people.charlie)


@pytest.mark.django_db
@schema.parametrize()
@FUZZ
def test_no_operation_answers_with_a_server_error(case, full_key) -> None:
    response = case.call_and_validate(headers={"Authorization": f"Bearer {full_key}"}, checks=CHECKS)
    # Authenticated as alice: a generated request is never refused as anonymous.
    assert response.status_code != 401, response.text[:300]


@pytest.mark.django_db
@schema.parametrize()
@FUZZ
def test_charlie_fuzzing_never_sees_team_a(case, charlie_full_key, worlds) -> None:
    response = case.call_and_validate(headers={"Authorization": f"Bearer {charlie_full_key}"}, checks=CHECKS)
    assert response.status_code != 401, response.text[:300]
    body = response.content or b""
    for secret in (str(worlds.server.uuid), worlds.certificate_sha256, str(worlds.domain.uuid)):
        assert secret.encode() not in body, f"team A's {secret} in charlie's answer: {body[:300]!r}"
