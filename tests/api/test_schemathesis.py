"""schemathesis against the OpenAPI schema: bounded examples, and no server errors anywhere.

Runs in-process over WSGI against the test database, as alice with a full key, after a team
A world (servers, results, findings, ...) was made, so generated ids sometimes hit real rows.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings

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


@pytest.fixture
def full_key(people, lab_issuer, settings) -> str:
    from api.services import apikey_create
    from tests.api.conftest import make_world

    settings.KEYCHEST_API_RATE_PER_KEY = 1_000_000
    settings.KEYCHEST_API_RATE_PER_IP = 1_000_000
    make_world(people.team_a, people.alice, lab_issuer)
    return apikey_create(team=people.team_a, user=people.alice, scopes=["read", "enrol", "manage"]).secret


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_with_a_server_error(case, full_key) -> None:
    from schemathesis.checks import not_a_server_error

    response = case.call_and_validate(headers={"Authorization": f"Bearer {full_key}"}, checks=[not_a_server_error])
    # Authenticated as alice: a generated request is never refused as anonymous.
    assert response.status_code != 401, response.text[:300]
