"""Tenancy by construction: every URL pattern that takes an object id is checked, not only the
ones someone remembered to write a test for.

The test walks Django's URL resolver. Each pattern with a parameter must be either in ROUTES
(which of team A's things fills each parameter) or in NOT_TENANT_OWNED (with the reason it names
no team's object); a new route in neither fails `test_every_route_with_a_parameter_is_mapped`.
For every mapped route, charlie (owner of team B) gets 404 on GET, POST, PUT, PATCH and DELETE
for team A's things, also when he mixes his own ids with team A's in a nested route, and no row
in the database changes. A 405 is accepted only where alice's own request gets 405 too (the
route does not take that method at all, whoever asks). alice's requests to the same URLs are
the positive control: they are never 404, so charlie's 404 is not just a wrong id.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework.test import APIClient

from agents.services import agent_create
from api.models import Scope
from api.services import apikey_create
from keychest.accounts.models import Membership, Team, User
from keychest.accounts.services import invitation_create
from lab.ctlog.certgen import make_ca
from tests.api.conftest import make_world
from tests.conftest import People

# Routes whose parameters name no team's object: the credential is the token itself, the page is
# public by design, or only staff reach it. Regexes over the normalised route.
NOT_TENANT_OWNED: dict[str, str] = {
    r"^admin/": "Django admin: staff only, behind allauth's login and 2FA (tests/security/test_admin_login.py)",
    r"^accounts/confirm-email/<key>/": "allauth's email confirmation: the key is the credential",
    r"^accounts/password/reset/key/": "allauth's password reset: the key is the credential",
    r"^invitations/<token>/": "accepting an invitation: the token is the credential (tests/accounts/test_teams.py)",
    r"^notifications/unsubscribe/<token>/": "one-click unsubscribe: the signed token is the credential",
    r"^notifications/recipients/<token>/": "an outside address confirms a channel: the signed token is the credential"
    " (tests/security/test_outside_recipients.py)",
    r"^account/notification-email/<token>/": "a notification email's holder confirms it: the signed token is the"
    " credential (tests/security/test_outside_recipients.py)",
    r"^api/claim/<token>/<action>/": "the claim confirmation link: the token is the credential",
    r"^api/v1/calendar/<token>\.ics": "the secret calendar feed: the token is the credential",
    r"^api/v1\.0/access/claim/<email>": "the public claim flow: it only ever emails that address",
    r"^spotcheck/<check_id>/": "a public one-off check kept for its shareable link; it has no team",
}


@dataclass
class Things:
    """One team's things that routes name, by the parameter values they take."""

    team: Team
    user: User
    server: Any
    domain: Any
    host: Any
    finding: Any
    event: Any
    channel: Any
    key: Any
    invitation: Any
    membership: Membership
    agent: Any
    ip_range: Any
    certificate_sha256: str
    certificate_prefix: str  # as findings quote it: /certificates/<12 hex>/
    api: APIClient  # the team owner's full key, for the routes that take keys only

    @property
    def server_without_slash(self) -> str:
        return f"servers/{self.server.uuid}"


# Normalised route -> how each of its parameters is filled from one team's Things. `key: True`
# routes take API keys only (the /api/v1.0 compatibility routes).
ROUTES: dict[str, dict[str, Any]] = {
    # pages
    "teams/<team_id>/": {"team_id": "team"},
    "teams/<team_id>/invite/": {"team_id": "team"},
    "teams/<team_id>/rename/": {"team_id": "team"},
    "teams/<team_id>/delete/": {"team_id": "team"},
    "teams/<team_id>/invitations/<invitation_id>/revoke/": {"team_id": "team", "invitation_id": "invitation"},
    "teams/<team_id>/members/<member_id>/role/": {"team_id": "team", "member_id": "membership"},
    "teams/<team_id>/members/<member_id>/remove/": {"team_id": "team", "member_id": "membership"},
    "settings/api-keys/<key_id>/revoke/": {"key_id": "key"},
    "agents/<agent_id>/revoke/": {"agent_id": "agent"},
    "ranges/<range_id>/": {"range_id": "ip_range"},
    "ranges/<range_id>/watch/": {"range_id": "ip_range"},
    "ranges/<range_id>/remove/": {"range_id": "ip_range"},
    "servers/<server_id>/": {"server_id": "server"},
    "servers/<server_id>/scan/": {"server_id": "server"},
    "servers/<server_id>/pause/": {"server_id": "server"},
    "servers/<server_id>/remove/": {"server_id": "server"},
    "certificates/<sha256>/": {"sha256": "certificate_sha256"},
    "certificates/<sha256>/pem/": {"sha256": "certificate_sha256"},
    "certificates/<prefix>/": {"prefix": "certificate_prefix"},
    "domains/<domain_id>/": {"domain_id": "domain"},
    "domains/<domain_id>/remove/": {"domain_id": "domain"},
    "domains/<domain_id>/auto-watch/": {"domain_id": "domain"},
    "domains/<domain_id>/hosts/<host_id>/watch/": {"domain_id": "domain", "host_id": "host"},
    "notifications/channels/<channel_id>/": {"channel_id": "channel"},
    "notifications/channels/<channel_id>/test/": {"channel_id": "channel"},
    "notifications/channels/<channel_id>/enable/": {"channel_id": "channel"},
    "notifications/channels/<channel_id>/secret/": {"channel_id": "channel"},
    "notifications/channels/<channel_id>/delete/": {"channel_id": "channel"},
    # /api/v1
    "api/v1/servers/<id>/": {"id": "server"},
    "api/v1/servers/<id>/findings/": {"id": "server"},
    "api/v1/servers/<id>/pause/": {"id": "server"},
    "api/v1/servers/<id>/resume/": {"id": "server"},
    "api/v1/servers/<id>/results/": {"id": "server"},
    "api/v1/servers/<id>/scan/": {"id": "server"},
    "api/v1/servers/<id>/timeline/": {"id": "server"},
    "api/v1/domains/<id>/": {"id": "domain"},
    "api/v1/domains/<id>/certificates/": {"id": "domain"},
    "api/v1/domains/<id>/hosts/": {"id": "domain"},
    "api/v1/certificates/<sha256>/": {"sha256": "certificate_sha256"},
    "api/v1/findings/<id>/": {"id": "finding"},
    "api/v1/events/<id>/": {"id": "event"},
    "api/v1/channels/<id>/": {"id": "channel"},
    "api/v1/channels/<id>/test/": {"id": "channel"},
    "api/v1/api-keys/<id>/": {"id": "key"},
    "api/v1/agents/<id>/": {"id": "agent"},
    "api/v1/agents/<id>/assign/": {"id": "agent"},
    # the slash-less form of any /api/v1 route answers as the canonical one does
    "api/v1/<path>": {"path": "server_without_slash"},
    "api/v1/ranges/<id>/": {"id": "ip_range"},
    "api/v1/ranges/<id>/services/": {"id": "ip_range"},
    "api/v1/ranges/<id>/watch/": {"id": "ip_range"},
    # /api/v1.0 (keys only): a host name team A watches
    "api/v1.0/servers/expiration/<domain>": {"domain": "server.host", "key": True},
}

METHODS = ["get", "post", "put", "patch", "delete"]


def normalise(route: str) -> str:
    """`api/v1/^servers/(?P<id>[0-9a-f-]{36})/$` -> `api/v1/servers/<id>/`; `<uuid:x>` -> `<x>`."""
    route = re.sub(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)", r"<\1>", route)
    route = re.sub(r"<\w+:(\w+)>", r"<\1>", route)
    return route.replace("^", "").replace("$", "")


def _walk(patterns: list[Any], prefix: str = "", has_params: bool = False) -> Iterator[tuple[str, bool]]:
    for entry in patterns:
        route = prefix + str(entry.pattern)
        params = has_params or entry.pattern.regex.groups > 0
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, route, params)
        elif isinstance(entry, URLPattern):
            yield normalise(route), params


def all_routes() -> set[str]:
    return {route for route, _params in _walk(get_resolver().url_patterns)}


def routes_with_parameters() -> set[str]:
    return {route for route, params in _walk(get_resolver().url_patterns) if params}


def exempt(route: str) -> bool:
    return any(re.search(pattern, route) for pattern in NOT_TENANT_OWNED)


def test_every_route_with_a_parameter_is_mapped() -> None:
    found = routes_with_parameters()
    unmapped = sorted(r for r in found if r not in ROUTES and not exempt(r))
    assert not unmapped, (
        "routes that take a parameter but are in neither ROUTES nor NOT_TENANT_OWNED of "
        f"tests/security/test_route_tenancy.py (map each to team A's things, or exempt it with a reason): {unmapped}"
    )
    stale = sorted(set(ROUTES) - found)
    assert not stale, f"ROUTES names routes that no longer exist: {stale}"
    unused = sorted(p for p in NOT_TENANT_OWNED if not any(re.search(p, r) for r in found))
    assert not unused, f"NOT_TENANT_OWNED entries that match no route: {unused}"


def test_the_walk_sees_the_routes_it_must() -> None:
    """The walk itself can fail: it finds nested DRF routes, page routes and exempt ones."""
    found = routes_with_parameters()
    assert {"api/v1/servers/<id>/scan/", "servers/<server_id>/", "teams/<team_id>/members/<member_id>/role/"} <= found
    assert "accounts/login/" not in found
    assert any(r.startswith("admin/") for r in found)


def _things(team: Team, user: User, issuer: Any, *, domain: str, member: User) -> Things:
    world = make_world(team, user, issuer, domain=domain)
    api = APIClient()
    secret = apikey_create(team=team, user=user, name="owner", scopes=[Scope.READ, Scope.ENROL, Scope.MANAGE]).secret
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return Things(
        team=team,
        user=user,
        server=world.server,
        domain=world.domain,
        host=world.host,
        finding=world.finding,
        event=world.event,
        channel=world.channel,
        key=world.key,
        invitation=invitation_create(team=team, by=user, email=f"invitee@{domain}"),
        membership=Membership.objects.get(team=team, user=member),
        agent=agent_create(team=team, name=f"agent {domain}")[0],
        ip_range=world.ip_range,
        certificate_sha256=world.certificate_sha256,
        certificate_prefix=world.certificate_sha256[:12],
        api=api,
    )


def _value(things: Things, path: str) -> str:
    value: Any = things
    for part in path.split("."):
        value = getattr(value, part)
    return value if isinstance(value, str) else str(getattr(value, "uuid", value))


def _url(route: str, values: dict[str, str]) -> str:
    url = "/" + re.sub(r"<(\w+)>", lambda m: values[m.group(1)], route)
    match = resolve(url.split("?")[0])
    assert normalise(match.route) == route, f"{url} resolved to {match.route}, not {route}"
    return url


def _database() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (the test database is small): what charlie must not change."""
    return {
        model._meta.label: list(model.objects.order_by("pk").values_list())
        for model in apps.get_models()
        if model._meta.managed and not model._meta.proxy
    }


def _ask(client: Client, method: str, url: str) -> int:
    if method == "post":
        return client.post(url, {}).status_code
    return client.generic(method.upper(), url, data="{}", content_type="application/json").status_code


def _ask_and_undo(client: Client, method: str, url: str) -> int:
    """alice's request, rolled back afterwards: each method meets the same rows."""
    with transaction.atomic():
        status = _ask(client, method, url)
        transaction.set_rollback(True)
    return status


@pytest.fixture(scope="module")
def lab_issuer() -> Any:
    return make_ca("KeyChest Tenancy Test CA")


@pytest.fixture
def tenants(people: People, lab_issuer: Any, settings: Any) -> tuple[Things, Things]:
    settings.KEYCHEST_API_RATE_PER_KEY = 100_000
    settings.KEYCHEST_API_RATE_PER_IP = 100_000
    team_a = _things(people.team_a, people.alice, lab_issuer, domain="example.com", member=people.bob)
    team_b = _things(people.team_b, people.charlie, lab_issuer, domain="example.net", member=people.charlie)
    return team_a, team_b


@pytest.mark.django_db
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_charlie_gets_404_for_team_a_on_every_mapped_route(route, people, tenants, client_for) -> None:
    team_a, team_b = tenants
    spec = {name: path for name, path in ROUTES[route].items() if name != "key"}
    keys_only = ROUTES[route].get("key", False)
    charlie = team_b.api if keys_only else client_for(people.charlie, people.team_b)
    alice = team_a.api if keys_only else client_for(people.alice, people.team_a)
    # Every mix of team A's and charlie's own values but charlie's own throughout.
    urls = []
    for owners in itertools.product([team_a, team_b], repeat=len(spec)):
        if all(owner is team_b for owner in owners):
            continue
        urls.append(_url(route, {name: _value(o, path) for (name, path), o in zip(spec.items(), owners, strict=True)}))
    url_a = urls[0]  # team A's values throughout
    _ask(charlie, "get", "/api/v1.0/ping" if keys_only else "/")  # his session / key's first-use writes

    before = _database()
    answers = {(url, method): _ask(charlie, method, url) for url in urls for method in METHODS}
    assert _database() == before, f"charlie's requests to {route} changed the database"

    # The positive control, after charlie's: alice reaches the same object with every method.
    alice_answers = {method: _ask_and_undo(alice, method, url_a) for method in METHODS}
    assert 404 not in alice_answers.values(), f"alice got 404 on {url_a}: {alice_answers} (the fixture is wrong)"
    for (url, method), status in answers.items():
        assert status == 404 or (status == 405 and alice_answers[method] == 405), (
            f"charlie {method.upper()} {url}: {status} (alice: {alice_answers[method]})"
        )
