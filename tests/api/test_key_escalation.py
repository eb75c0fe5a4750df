"""A key cannot make a key with more scopes than its own, and a revoked key stops at once.

Through /api/v1 only a `manage` key reaches key creation (ScopePermission), and `manage` implies
the other scopes, so there the rule cannot be crossed today; it lives in `apikey_create(parent=)`
so that it holds whatever the scopes become, and is tested there with a key that has less. Every
refusal here has a positive control: the same caller succeeds with what it is allowed.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from api.models import ApiKey, Scope
from api.services import apikey_create, apikey_revoke
from tests.api.conftest import key_client

pytestmark = pytest.mark.django_db

ESCALATION = "A key cannot make a key with more scopes than its own."


def test_a_key_cannot_make_a_key_with_a_scope_it_lacks(people) -> None:
    enrol = apikey_create(team=people.team_a, user=people.alice, name="enrol", scopes=[Scope.ENROL]).api_key
    before = ApiKey.objects.count()
    for wanted in ([Scope.READ], [Scope.ENROL, Scope.MANAGE], [Scope.READ, Scope.ENROL]):
        with pytest.raises(PermissionDenied, match=ESCALATION):
            apikey_create(team=people.team_a, user=people.alice, scopes=wanted, parent=enrol)
    assert ApiKey.objects.count() == before
    # Positive control: the same parent makes a key with the scope it has.
    child = apikey_create(team=people.team_a, user=people.alice, scopes=[Scope.ENROL], parent=enrol)
    assert child.api_key.scopes == [Scope.ENROL]


def test_manage_implies_read_and_enrol_for_the_children_of_a_key(people) -> None:
    manage = apikey_create(team=people.team_a, user=people.alice, name="manage", scopes=[Scope.MANAGE]).api_key
    child = apikey_create(
        team=people.team_a, user=people.alice, scopes=[Scope.READ, Scope.ENROL, Scope.MANAGE], parent=manage
    )
    assert set(child.api_key.scopes) == {Scope.READ, Scope.ENROL, Scope.MANAGE}
    read = apikey_create(team=people.team_a, user=people.alice, name="read", scopes=[Scope.READ]).api_key
    with pytest.raises(PermissionDenied, match=ESCALATION):
        apikey_create(team=people.team_a, user=people.alice, scopes=[Scope.MANAGE], parent=read)


def test_through_the_api_a_lesser_key_is_refused_and_a_manage_key_succeeds(people) -> None:
    read = apikey_create(team=people.team_a, user=people.alice, name="read", scopes=[Scope.READ]).secret
    enrol = apikey_create(team=people.team_a, user=people.alice, name="enrol", scopes=[Scope.ENROL]).secret
    manage = apikey_create(team=people.team_a, user=people.alice, name="manage", scopes=[Scope.MANAGE]).secret
    before = ApiKey.objects.count()
    for secret in (read, enrol):
        refused = key_client(secret).post("/api/v1/api-keys/", {"scopes": ["manage"]}, format="json")
        assert refused.status_code == 403, refused.content
    assert ApiKey.objects.count() == before
    made = key_client(manage).post("/api/v1/api-keys/", {"scopes": ["read", "enrol", "manage"]}, format="json")
    assert made.status_code == 201, made.content
    # The new key works, and is the caller's, in the caller's team.
    new = ApiKey.objects.get(uuid=made.json()["id"])
    assert (new.user, new.team, new.source) == (people.alice, people.team_a, "api")
    assert key_client(made.json()["secret"]).get("/api/v1/servers/").status_code == 200


def test_a_session_is_not_limited_by_any_key(alice_client) -> None:
    made = alice_client.post(
        "/api/v1/api-keys/", {"scopes": ["read", "enrol", "manage"]}, content_type="application/json"
    )
    assert made.status_code == 201


def test_a_key_revoked_through_the_api_stops_at_once_even_when_cached(people, alice_client) -> None:
    new = apikey_create(team=people.team_a, user=people.alice, name="doomed", scopes=[Scope.READ])
    client = key_client(new.secret)
    # Positive control, twice: the second answer comes through the key cache.
    assert client.get("/api/v1/servers/").status_code == 200
    assert client.get("/api/v1/servers/").status_code == 200
    assert alice_client.delete(f"/api/v1/api-keys/{new.api_key.uuid}/").status_code == 204
    assert client.get("/api/v1/servers/").status_code == 401
    assert client.get("/api/v1.0/user").status_code == 401


def test_a_key_revoked_on_the_keys_page_stops_and_a_refused_revoke_leaves_it_working(
    people, alice_client, bob_client
) -> None:
    new = apikey_create(team=people.team_a, user=people.alice, name="page", scopes=[Scope.READ])
    client = key_client(new.secret)
    assert client.get("/api/v1/servers/").status_code == 200
    # bob (a member) may not revoke alice's key: it goes on working.
    bob_client.post(f"/settings/api-keys/{new.api_key.uuid}/revoke/")
    assert client.get("/api/v1/servers/").status_code == 200
    alice_client.post(f"/settings/api-keys/{new.api_key.uuid}/revoke/")
    assert client.get("/api/v1/servers/").status_code == 401


def test_revoking_one_key_leaves_the_others_working(people) -> None:
    keep = apikey_create(team=people.team_a, user=people.alice, name="keep", scopes=[Scope.READ])
    drop = apikey_create(team=people.team_a, user=people.alice, name="drop", scopes=[Scope.READ])
    assert key_client(drop.secret).get("/api/v1/servers/").status_code == 200
    apikey_revoke(api_key=drop.api_key, by=people.alice)
    assert key_client(drop.secret).get("/api/v1/servers/").status_code == 401
    assert key_client(keep.secret).get("/api/v1/servers/").status_code == 200
