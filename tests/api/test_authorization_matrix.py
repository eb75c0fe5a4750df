"""The authorization matrix, generated from the OpenAPI schema: every operation and every kind of
caller gets the right answer, and charlie always gets 404 on team A's objects.

Callers: anonymous, alice (owner of team A), dave (member), erin (admin), bob (viewer in team A),
charlie (owner of team B), alice's revoked key, alice's read-only key and alice's enrol-only key.
Session callers use their session on /api/v1 and a full-scope key of their own on /api/v1.0
(which takes keys only). Each caller's request is rolled back, so every caller meets the same
rows. The public operations are pinned (PUBLIC_EXPECTED), and every API route is in the schema
or named in NOT_IN_SCHEMA, so no operation leaves the matrix unnoticed.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import transaction
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from api.models import ApiKey, Scope
from api.services import apikey_create, apikey_revoke
from keychest.accounts.models import Membership, Role
from lab.ctlog.certgen import issue
from tests.api.conftest import World, make_world, pem_of
from tests.conftest import make_user

SAFE = {"get", "head", "options"}
# Per-user (all teams) operations: a key acts for one team, so keys are refused (finding 3).
SESSION_ONLY = {"v1_exports_calendar_url_retrieve"}
ACTORS = ["anonymous", "revoked_key", "charlie", "bob_viewer", "read_key", "enrol_key", "member", "admin", "alice"]
# What an enrol-only key may do: enrol servers, certificates and watched domains, scan, and ask
# who it is (enrol does not imply reading the team's other things).
ENROL_OPS = {
    "v1_servers_create",
    "v1_servers_bulk_create",
    "v1_servers_scan_create",
    "v1_certificates_create",
    "v1_domains_create",
    "v1.0_servers_add_create",
    "v1.0_certificate_add_create",
    "v1.0_user_retrieve",
}
# What needs an admin (or owner) of the team, beyond a member's manage scope: agents, IP ranges, alert
# channels, the issuance policy, invitations, and revoking someone else's key (the world's key is
# alice's).
ADMIN_OPS = {
    "v1_agents_create",
    "v1_agents_destroy",
    "v1_agents_assign_create",
    "v1_agents_unassign_create",
    "v1_ranges_create",
    "v1_ranges_destroy",
    "v1_api_keys_destroy",
    "v1_channels_create",
    "v1_channels_partial_update",
    "v1_channels_destroy",
    "v1_channels_test_create",
    "v1_issuance_policy_update",
    "v1_members_invite_create",
}


def _operations() -> list[tuple[str, str, str, bool]]:
    """(path, method, operation id, public) for every operation in the schema."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    out = []
    for path, item in sorted(schema["paths"].items()):
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            # No security requirement, or an empty one among the alternatives, means public.
            security = operation.get("security")
            public = not security or {} in security
            out.append((path, method, operation["operationId"], public))
    return out


OPERATIONS = _operations()
# Operations anyone may call without a key or session: the claim flow, ping, the schema, the
# secret calendar address (its token is the credential).
PUBLIC = {op for path, method, op, public in OPERATIONS if public}
# Pinned: an operation made public by mistake (AllowAny, an empty security) fails the matrix.
PUBLIC_EXPECTED = {
    "v1.0_access_claim_create",
    "v1.0_access_claim_retrieve",
    "v1.0_ping_retrieve",
    "v1_calendar_.ics_retrieve",
}
# API routes not in the schema, and why (tests/security/test_route_tenancy.py walks the rest).
NOT_IN_SCHEMA = {
    "api/claim/<token>/<action>/": "the claim email's confirm/revoke/block page for people, not an API operation",
    "api/v1/agent/enrol": "the agent protocol (docs/agent.md), authenticated by agent tokens and keys",
    "api/v1/agent/work": "the agent protocol (docs/agent.md), authenticated by agent keys",
    "api/v1/agent/results": "the agent protocol (docs/agent.md), authenticated by agent keys",
    "api/v1/agent/sweeps": "the agent protocol (docs/agent.md), authenticated by agent keys",
    "api/v1/docs/": "the schema's HTML viewer",
    "api/v1/<path>": "the slash-less form of every route above, answering as it does",
    "api/v1/schema/": "the schema itself",
}


def _bodies(world: World, issuer: Any) -> dict[str, dict[str, Any]]:
    """A valid body for every operation that takes one, keyed by operation id."""
    return {
        "v1_servers_create": {"host": "new.example.com"},
        "v1_servers_update": {"scan_interval": 3600},
        "v1_servers_partial_update": {"scan_interval": 3600},
        "v1_servers_bulk_create": {"text": "bulk1.example.com\nbulk2.example.com"},
        "v1_certificates_create": {"certificate": pem_of(issue(issuer, ["up.example.com"]).certificate)},
        "v1_channels_create": {"kind": "email", "name": "ops"},
        "v1_domains_create": {"domain": "watched.example.org"},
        "v1_domains_partial_update": {"auto_watch": True},
        "v1_channels_partial_update": {"enabled": True},
        "v1_api_keys_create": {"name": "k", "scopes": ["read"]},
        "v1_members_invite_create": {"email": "newcomer@example.org", "role": "viewer"},
        "v1_issuance_policy_update": {"allowed_issuers": ["letsencrypt.org"], "known_keys": [], "check_caa": True},
        "v1_agents_create": {"name": "dc1"},
        "v1_agents_assign_create": {"servers": [str(world.server.uuid)]},
        "v1_agents_unassign_create": {"servers": [str(world.server.uuid)]},
        "v1_ranges_create": {"cidr": "8.8.8.0/24", "ports": [443]},
        "v1_ranges_watch_create": {"service": str(world.found.uuid), "name": world.server.host},  # type: ignore[attr-defined]
        "v1.0_servers_add_create": {"domain": "enrol.example.com"},
        "v1.0_certificate_add_create": {"certificate": pem_of(issue(issuer, ["enrol.example.com"]).certificate)},
    }


def _fill(path: str, world: World) -> str:
    values = {
        "servers": str(world.server.uuid),
        "domains": str(world.domain.uuid),
        "findings": str(world.finding.uuid),
        "events": str(world.event.uuid),
        "channels": str(world.channel.uuid),
        "api-keys": str(world.key.uuid),
        "agents": str(world.agent.uuid),  # type: ignore[attr-defined]
        "ranges": str(world.ip_range.uuid),  # type: ignore[attr-defined]
    }

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "sha256":
            return world.certificate_sha256
        if name == "domain":
            return "www.example.com"
        if name == "id":
            collection = path.split("/")[3]
            return values[collection]
        raise AssertionError(f"no value for {{{name}}} in {path}")

    filled = re.sub(r"\{([^}]+)\}", one, path)
    if filled.endswith("/expiry"):
        filled += "?host=www.example.com"
    return filled


@pytest.fixture
def actors(people, lab_issuer) -> dict[str, tuple[APIClient, APIClient]]:
    """Each actor's (session-or-key client for /api/v1, key client for /api/v1.0)."""

    def session(user, team) -> APIClient:
        from keychest.accounts.middleware import SESSION_KEY

        client = APIClient()
        client.force_login(user)
        store = client.session
        store[SESSION_KEY] = str(team.uuid)
        store.save()
        return client

    def key(secret: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    full = [Scope.READ, Scope.ENROL, Scope.MANAGE]
    dave = make_user("dave@example.org")
    erin = make_user("erin@example.org")
    Membership.objects.create(team=people.team_a, user=dave, role=Role.MEMBER)
    Membership.objects.create(team=people.team_a, user=erin, role=Role.ADMIN)
    # bob made a full key as a member, then became a viewer: the key can do no more than he can.
    bob_key = apikey_create(team=people.team_a, user=people.bob, scopes=full).secret
    Membership.objects.filter(team=people.team_a, user=people.bob).update(role=Role.VIEWER)
    revoked = apikey_create(team=people.team_a, user=people.alice, name="revoked", scopes=full)
    assert key(revoked.secret).get("/api/v1/servers/").status_code == 200  # the positive control
    apikey_revoke(api_key=revoked.api_key, by=people.alice)
    read = apikey_create(team=people.team_a, user=people.alice, name="read", scopes=[Scope.READ]).secret
    enrol = apikey_create(team=people.team_a, user=people.alice, name="enrol", scopes=[Scope.ENROL]).secret
    return {
        "anonymous": (APIClient(), APIClient()),
        "revoked_key": (key(revoked.secret), key(revoked.secret)),
        "charlie": (
            session(people.charlie, people.team_b),
            key(apikey_create(team=people.team_b, user=people.charlie, scopes=full).secret),
        ),
        "bob_viewer": (session(people.bob, people.team_a), key(bob_key)),
        "read_key": (key(read), key(read)),
        "enrol_key": (key(enrol), key(enrol)),
        "member": (session(dave, people.team_a), key(apikey_create(team=people.team_a, user=dave, scopes=full).secret)),
        "admin": (session(erin, people.team_a), key(apikey_create(team=people.team_a, user=erin, scopes=full).secret)),
        "alice": (
            session(people.alice, people.team_a),
            key(apikey_create(team=people.team_a, user=people.alice, scopes=full).secret),
        ),
    }


def expected(actor: str, path: str, method: str, op: str) -> set[int]:
    """The statuses the matrix allows for one caller on one operation."""
    ok = {200, 201, 202, 204}
    unsafe = method not in SAFE
    # Paths naming one of team A's things (by id, hash or host name).
    team_a_object = "{" in path or path.endswith("/expiry")
    if actor in ("anonymous", "revoked_key"):
        return {401}
    if actor == "charlie":
        if team_a_object:
            return {404}
        # Charlie acts on his own team B: reads answer, writes succeed there.
        return ok
    if actor == "read_key" and op in SESSION_ONLY:
        return {403}
    if actor in ("bob_viewer", "read_key"):
        return {403} if unsafe else ok
    if actor == "enrol_key":
        return ok if op in ENROL_OPS else {403}
    if actor == "member":
        return {403} if op in ADMIN_OPS else ok
    # alice (owner) and erin (admin) of team A: everything works.
    return ok


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "method", "op"),
    [(p, m, o) for p, m, o, public in OPERATIONS if not public],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_operation_answers_every_caller_rightly(path, method, op, people, lab_issuer, actors, settings) -> None:
    settings.KEYCHEST_API_RATE_PER_KEY = 10_000
    settings.KEYCHEST_API_RATE_PER_IP = 10_000
    world = make_world(people.team_a, people.alice, lab_issuer)
    # Charlie has things of his own, so his lists are not trivially empty.
    make_world(people.team_b, people.charlie, lab_issuer, domain="example.net")
    url = _fill(path, world)
    body = _bodies(world, lab_issuer).get(op)
    for actor in ACTORS:
        session_client, key_client = actors[actor]
        client = key_client if path.startswith("/api/v1.0/") else session_client
        with transaction.atomic():  # each caller meets the same rows
            response = client.generic(method.upper(), url, data=_json(body), content_type="application/json")
            transaction.set_rollback(True)
        allowed = expected(actor, path, method, op)
        assert response.status_code in allowed, (
            f"{actor} {method.upper()} {url}: {response.status_code} {response.content[:300]!r}"
        )
        if actor == "charlie" and response.status_code == 200 and method == "get" and "{" not in path:
            assert str(world.server.uuid).encode() not in response.content
            assert world.certificate_sha256.encode() not in response.content


def _json(body: dict[str, Any] | None) -> str:
    import json

    return json.dumps(body) if body is not None else ""


def test_the_matrix_covers_the_whole_api() -> None:
    ops = {o for _p, _m, o, _pub in OPERATIONS}
    paths = {p for p, _m, _o, _pub in OPERATIONS}
    assert len(OPERATIONS) >= 40
    for needle in [
        "/api/v1/servers/{id}/scan/",
        "/api/v1/certificates/{sha256}/",
        "/api/v1/exports/calendar.ics",
        "/api/v1.0/servers/expiration/{domain}",
    ]:
        assert needle in paths
    assert PUBLIC == PUBLIC_EXPECTED
    assert ops >= ENROL_OPS | ADMIN_OPS, "ENROL_OPS / ADMIN_OPS name operations that are gone"
    assert ops >= PUBLIC
    assert not [o for o in PUBLIC if o.startswith("v1_servers")]


@pytest.mark.django_db
def test_the_revoked_key_really_was_alices(actors, people) -> None:
    revoked = ApiKey.objects.get(name="revoked")
    assert revoked.user == people.alice and revoked.revoked_at is not None


def test_every_api_route_is_in_the_schema_or_named() -> None:
    """The matrix takes its operations from the schema: a route left out of it would escape."""
    from tests.security.test_route_tenancy import all_routes

    in_schema = {re.sub(r"\{(\w+)\}", r"<\1>", p.lstrip("/")) for p, _m, _o, _pub in OPERATIONS}
    api_routes = {r for r in all_routes() if r.startswith("api/")}
    missing = sorted(api_routes - in_schema - set(NOT_IN_SCHEMA))
    assert not missing, f"API routes neither in the OpenAPI schema nor in NOT_IN_SCHEMA: {missing}"
    assert not sorted(set(NOT_IN_SCHEMA) - api_routes), "NOT_IN_SCHEMA names routes that are gone"


@pytest.mark.django_db
@pytest.mark.parametrize("op", sorted(PUBLIC_EXPECTED))
def test_the_public_operations_answer_anonymous_callers(op, people) -> None:
    path, method = next((p, m) for p, m, o, _pub in OPERATIONS if o == op)
    assert method == "get" or op == "v1.0_access_claim_create"
    if op == "v1.0_access_claim_create":
        return  # a POST that sends an email: tests/api/test_claim_flow.py drives it anonymously
    url = re.sub(r"\{(\w+)\}", "x", path)
    assert APIClient().get(url).status_code != 401
