"""The per-process cache of verified API keys (api/keycache.py): used while the auth epoch in
PostgreSQL is unchanged, dropped by every change that can take a right away — in this process
and, through the epoch each request reads before its view runs, in every other one at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from api import keycache
from api.keys import key_hash
from api.models import ApiKey, Claim, Scope
from api.services import apikey_create, apikey_revoke, claim_confirm, claim_create
from keychest.accounts.models import Membership, Role
from keychest.accounts.services import membership_remove, membership_set_role
from monitors.models import Server

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bob_key(people) -> str:
    return apikey_create(team=people.team_a, user=people.bob, name="bob", scopes=[Scope.READ, Scope.ENROL]).secret


def _user(secret: str) -> int:
    return APIClient().get("/api/v1.0/user", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code


def _add(secret: str, host: str) -> int:
    """POST /servers/add as scripts send it (JSON)."""
    return (
        APIClient()
        .post("/api/v1.0/servers/add", {"domain": host}, format="json", HTTP_AUTHORIZATION=f"Bearer {secret}")
        .status_code
    )


def _statements(call) -> list[str]:  # type: ignore[no-untyped-def]
    """Statements `call` sent, without savepoint commands: in the test's transaction every
    prepared statement runs under one (keychest.sqlrows); requests run in autocommit, without."""
    with CaptureQueriesContext(connection) as queries:
        call()
    return [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]


def _expiration(secret: str, host: str = "www.example.com") -> int:
    return APIClient().get(f"/api/v1.0/servers/expiration/{host}", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code


needs_epoch = pytest.mark.skipif(connection.vendor != "postgresql", reason="keys are cached only on PostgreSQL")


@needs_epoch
def test_a_verified_key_is_reused_with_only_an_epoch_check(bob_key) -> None:
    assert any("kc_api_key_lookup" in sql for sql in _statements(lambda: _user(bob_key)))
    assert key_hash(bob_key) in keycache.KEY_CACHE._entries
    # A DRF view checks a cached key's epoch with a query of its own, then runs.
    (epoch_check,) = _statements(lambda: _user(bob_key))
    assert "kc_api_auth_epoch" in epoch_check


@needs_epoch
@pytest.mark.django_db(transaction=True)
def test_a_call_with_a_cached_key_reads_the_epoch_then_answers(people, bob_key) -> None:
    Server.objects.create(team=people.team_a, host="www.example.com", port=443)
    assert _expiration(bob_key) == 200
    # (A server with no scan results yet costs one more statement: whether it is watched.)
    epoch_check, answer, watched = _statements(lambda: _expiration(bob_key))
    assert "kc_api_auth_epoch" in epoch_check and "kc_api_expiry" in answer
    assert "monitors_server" in watched


def _revoke_elsewhere(secret: str) -> None:
    """What another process's revocation leaves behind: the row changed and the epoch advanced
    in the database, and this process's cache not told."""
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{ApiKey._meta.db_table}" SET "revoked_at" = now() WHERE "key_hash" = %s',
            [key_hash(secret)],
        )
        cursor.execute("SELECT nextval('api_auth_epoch')")
    assert key_hash(secret) in keycache.KEY_CACHE._entries


def _a_key_revoked_elsewhere_is_refused_before_anything_runs(people, secret: str) -> None:
    Server.objects.create(team=people.team_a, host="www.example.com", port=443)
    assert _add(secret, "one.example") == 200
    _revoke_elsewhere(secret)
    assert _add(secret, "two.example") == 401
    assert not Server.objects.filter(host="two.example").exists()
    assert _expiration(secret) == 401
    assert _user(secret) == 401


@needs_epoch
def test_a_key_revoked_elsewhere_is_refused_inside_a_transaction(people, bob_key) -> None:
    _a_key_revoked_elsewhere_is_refused_before_anything_runs(people, bob_key)


@needs_epoch
@pytest.mark.django_db(transaction=True)
def test_a_key_revoked_elsewhere_is_refused_in_autocommit(people, bob_key) -> None:
    _a_key_revoked_elsewhere_is_refused_before_anything_runs(people, bob_key)


@needs_epoch
@pytest.mark.django_db(transaction=True)
def test_an_advanced_epoch_alone_costs_one_look_up_again(people, bob_key) -> None:
    Server.objects.create(team=people.team_a, host="www.example.com", port=443)
    assert _expiration(bob_key) == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('api_auth_epoch')")
    moved_on, look_up, answer = _statements(lambda: _expiration(bob_key))[:3]
    assert "kc_api_auth_epoch" in moved_on
    assert "kc_api_key_lookup" in look_up and "kc_api_expiry" in answer
    epoch_check, answer = _statements(lambda: _expiration(bob_key))[:2]  # cached again, under the new epoch
    assert "kc_api_auth_epoch" in epoch_check and "kc_api_expiry" in answer


@needs_epoch
def test_a_refusal_is_not_trusted_from_the_cache(people, bob_key) -> None:
    Membership.objects.filter(team=people.team_a, user=people.bob).delete()
    assert _user(bob_key) == 401
    # Restored without a signal or a bump (a raw write): the refusal is looked up again anyway.
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{Membership._meta.db_table}" ("uuid", "team_id", "user_id", "role", "created_at") '
            "VALUES (gen_random_uuid(), %s, %s, %s, now())",
            [people.team_a.pk, people.bob.pk, Role.MEMBER],
        )
    assert _user(bob_key) == 200


def test_entries_expire(bob_key, settings) -> None:
    settings.KEYCHEST_API_KEY_CACHE_SECONDS = 0
    _user(bob_key)
    # The prepared look-up on PostgreSQL, the plain SQL elsewhere.
    assert any("kc_api_key_lookup" in sql or '"api_apikey"' in sql for sql in _statements(lambda: _user(bob_key)))


def _bumps(change) -> None:  # type: ignore[no-untyped-def]
    """`change` advances the epoch and empties this process's cache."""
    before = keycache.epoch_read()
    assert before is None or len(keycache.KEY_CACHE) > 0  # None: no epoch, nothing cached (SQLite)
    change()
    assert before is None or keycache.epoch_read() != before
    assert len(keycache.KEY_CACHE) == 0


def test_revocation_bumps_the_epoch_and_refuses_at_once(people, bob_key) -> None:
    assert _user(bob_key) == 200
    key = ApiKey.objects.get(key_hash=key_hash(bob_key))
    _bumps(lambda: apikey_revoke(api_key=key, by=people.bob))
    assert _user(bob_key) == 401


def test_a_role_change_bumps_the_epoch(people, bob_key) -> None:
    assert _add(bob_key, "before.example") == 200
    membership = Membership.objects.get(team=people.team_a, user=people.bob)
    _bumps(lambda: membership_set_role(membership=membership, role=Role.VIEWER, by=people.alice))
    assert _add(bob_key, "after.example") == 403
    assert not Server.objects.filter(host="after.example").exists()


def test_removal_from_the_team_bumps_the_epoch(people, bob_key) -> None:
    assert _user(bob_key) == 200
    membership = Membership.objects.get(team=people.team_a, user=people.bob)
    _bumps(lambda: membership_remove(membership=membership, by=people.alice))
    assert _user(bob_key) == 401


def test_joining_again_bumps_the_epoch(people, bob_key) -> None:
    Membership.objects.filter(team=people.team_a, user=people.bob).delete()
    assert _user(bob_key) == 401
    _user(bob_key)  # the refusal's look-up is cached too
    _bumps(lambda: Membership.objects.create(team=people.team_a, user=people.bob, role=Role.MEMBER))
    assert _user(bob_key) == 200


def test_deactivating_the_user_bumps_the_epoch(people, bob_key) -> None:
    assert _user(bob_key) == 200

    def deactivate() -> None:
        people.bob.is_active = False
        people.bob.save(update_fields=["is_active"])

    _bumps(deactivate)
    assert _user(bob_key) == 401


def test_a_login_does_not_bump_the_epoch(people, bob_key) -> None:
    _user(bob_key)
    before = keycache.epoch_read()
    people.bob.save(update_fields=["last_login"])
    assert keycache.epoch_read() == before


def test_a_scope_change_through_a_save_bumps_the_epoch(people, bob_key) -> None:
    assert _add(bob_key, "one.example") == 200
    key = ApiKey.objects.get(key_hash=key_hash(bob_key))

    def narrow() -> None:
        key.scopes = [Scope.READ]
        key.save(update_fields=["scopes"])  # e.g. the admin

    _bumps(narrow)
    assert _add(bob_key, "two.example") == 403


def test_deleting_the_key_bumps_the_epoch(bob_key) -> None:
    assert _user(bob_key) == 200
    _bumps(lambda: ApiKey.objects.filter(key_hash=key_hash(bob_key)).delete())
    assert _user(bob_key) == 401


def test_confirming_a_claimed_key_bumps_the_epoch(people) -> None:
    secret = "claimed-key-0123456789"
    assert claim_create(email="dora@example.org", secret=secret, ip="192.0.2.1").status == "created"
    assert APIClient().get("/api/v1.0/user", HTTP_AUTHORIZATION=f"Bearer {secret}").json()["confirmed"] is False
    claim = Claim.objects.get(email="dora@example.org")
    _bumps(lambda: claim_confirm(claim=claim, ip="192.0.2.1"))
    assert APIClient().get("/api/v1.0/user", HTTP_AUTHORIZATION=f"Bearer {secret}").json()["confirmed"] is True


def test_throttling_still_counts_every_cached_request(people, bob_key, settings) -> None:
    settings.KEYCHEST_API_RATE_PER_KEY = 3
    codes = [APIClient().get(f"/api/v1.0/servers/expiration/x.example?api_key={bob_key}").status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]


# --- across processes -------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import json, sys
    import django
    import keychest.settings_test as test_settings
    # The same Redis keys as the test process (test settings add the pid to the prefix).
    test_settings.CACHES["default"]["KEY_PREFIX"] = sys.argv[2]
    django.setup()
    from django.test.utils import setup_test_environment
    setup_test_environment()
    from django.test import Client
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    secret = sys.argv[1]
    client = Client()
    for line in sys.stdin:
        method, path, body = (line.strip().split(" ", 2) + [""])[:3]
        with CaptureQueriesContext(connection) as queries:
            if method == "POST":
                response = client.post(
                    path,
                    body,
                    content_type="application/x-www-form-urlencoded",
                    HTTP_AUTHORIZATION="Bearer " + secret,
                )
            else:
                response = client.get(path, HTTP_AUTHORIZATION="Bearer " + secret)
        print(json.dumps([response.status_code, len(queries)]), flush=True)
    """
)


class OtherProcess:
    """Another web process (its own key cache) answering API calls on the test database."""

    def __init__(self, secret: str) -> None:
        db = connection.settings_dict
        host = db.get("HOST") or "127.0.0.1"
        url = f"postgres://{db.get('USER') or 'postgres'}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "keychest.settings_test",
            "PYTHONPATH": str(ROOT),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, secret, settings.CACHES["default"].get("KEY_PREFIX", "")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )

    def get(self, path: str, method: str = "GET", body: str = "") -> tuple[int, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{method} {path} {body}".strip() + "\n")
        self.proc.stdin.flush()
        status, queries = json.loads(self.proc.stdout.readline())
        return status, queries

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs a database another process can share")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", ["revoke", "viewer", "remove", "deactivate"])
def test_a_change_in_one_process_is_refused_by_another_at_once(people, change) -> None:
    secret = apikey_create(team=people.team_a, user=people.bob, name="bob", scopes=[Scope.READ, Scope.ENROL]).secret
    Server.objects.create(team=people.team_a, host="www.example.com", port=443)
    other = OtherProcess(secret)
    try:
        assert other.get("/api/v1.0/user")[0] == 200
        assert other.get("/api/v1.0/user") == (200, 1)  # the other process's cache, and its epoch checked
        assert other.get("/api/v1.0/servers/add", "POST", "domain=one.example.com")[0] == 200
        membership = Membership.objects.get(team=people.team_a, user=people.bob)
        if change == "revoke":
            apikey_revoke(api_key=ApiKey.objects.get(key_hash=key_hash(secret)), by=people.alice)
        elif change == "viewer":
            membership_set_role(membership=membership, role=Role.VIEWER, by=people.alice)
        elif change == "remove":
            membership_remove(membership=membership, by=people.alice)
        else:
            people.bob.is_active = False
            people.bob.save(update_fields=["is_active"])
        if change == "viewer":
            # A viewer's key still reads, but may no longer enrol.
            assert other.get("/api/v1.0/servers/add", "POST", "domain=new.example.com")[0] == 403
            assert other.get("/api/v1.0/servers/expiration/www.example.com")[0] == 200
            assert not Server.objects.filter(host="new.example.com").exists()
        else:
            assert other.get("/api/v1.0/user")[0] == 401
            assert other.get("/api/v1.0/servers/expiration/www.example.com")[0] == 401
    finally:
        other.close()


@needs_epoch
def test_the_epoch_is_a_sequence_and_no_statement_guard_is_left() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('api_auth_epoch'), to_regprocedure('kc_auth_epoch_is(bigint)')")
        sequence, guard = cursor.fetchone()
    assert sequence == "api_auth_epoch" and guard is None
