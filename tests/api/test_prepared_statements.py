"""The API's prepared statements when the database session loses them, and behind a real PgBouncer.

The key look-up, the expiration rows and the enrolment insert run as prepared statements
(keychest.sqlrows). A session that lost them (DEALLOCATE ALL, DISCARD ALL) prepares them again;
behind PgBouncer in transaction mode KEYCHEST_DB_PREPARED_STATEMENTS=0 runs them unprepared.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
from django.db import DatabaseError, connection

from api import keycache
from keychest.sqlrows import execute_prepared
from lab.ctlog.certgen import issue
from monitors.models import Server
from tests.api.conftest import key_client, scan_result_for

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="server-side prepared statements are PostgreSQL's"
)

_hosts = itertools.count(1)


@pytest.fixture
def watched(people, lab_issuer) -> Server:
    server = Server.objects.create(team=people.team_a, host="www.example.com", port=443)
    scan_result_for(server, address="192.0.2.1", der=issue(lab_issuer, ["www.example.com"]).certificate)
    return server


def api_calls(secret: str) -> None:
    """The prepared statements of the API: key look-up, the cached key's epoch check, expiration
    rows, enrolment."""
    keycache.KEY_CACHE.clear()
    client = key_client(secret)
    expiration = client.get("/api/v1.0/servers/expiration/www.example.com")
    assert expiration.status_code == 200, expiration.content
    assert expiration.json()["certificate_found"] is True
    added = client.post("/api/v1.0/servers/add", {"domain": f"new-{next(_hosts)}.example.com"}, format="json")
    assert added.status_code == 200, added.content
    assert added.json()["status"] == "success"


API_STATEMENTS = {"kc_api_auth_epoch", "kc_api_expiry", "kc_api_key_lookup", "kc_server_enrol"}


def held() -> set[str]:
    """The statements this session holds, by the name the code gives them (without the digest)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {row[0].rsplit("_", 1)[0] for row in cursor.fetchall()}


@pytest.mark.parametrize(
    "in_transaction",
    [
        pytest.param(False, marks=pytest.mark.django_db(transaction=True), id="autocommit"),
        pytest.param(True, marks=pytest.mark.django_db, id="in-the-test-transaction"),
    ],
)
def test_the_api_answers_after_the_session_lost_its_prepared_statements(
    alice_key, watched, in_transaction: bool
) -> None:
    # (In the test's transaction the connection may hold statements of earlier tests too.)
    api_calls(alice_key)
    assert held() >= API_STATEMENTS
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # what a pooler's reset or another backend looks like
    assert held() == set()
    api_calls(alice_key)
    assert held() == API_STATEMENTS
    assert connection.get_autocommit() is not in_transaction
    assert Server.objects.filter(team=watched.team).count() == 3


# --- behind a real PgBouncer in transaction mode ------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def pgbouncer(tmp_path: Path) -> Iterator[int]:
    """A PgBouncer on a free port in front of the test database, in transaction mode, with two
    server connections used in turn (round robin): consecutive transactions of one client
    alternate between two PostgreSQL sessions."""
    binary = shutil.which("pgbouncer", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if binary is None:
        pytest.skip("needs the pgbouncer binary (Debian: apt-get install pgbouncer)")
    db = connection.settings_dict
    server = f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={db['USER'] or 'postgres'}"
    if db["PASSWORD"]:
        server += f" password={db['PASSWORD']}"
    port = _free_port()
    (tmp_path / "users.txt").write_text(f'"{db["USER"] or "postgres"}" ""\n')
    config = tmp_path / "pgbouncer.ini"
    config.write_text(
        f"[databases]\n* = {server}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {tmp_path / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 2\nmin_pool_size = 2\nserver_round_robin = 1\n"
        # KeyChest connects with `options=-c jit=off`, a startup parameter PgBouncer refuses.
        "ignore_startup_parameters = options\n"
    )
    # PgBouncer refuses to run as root; it reads its configuration before dropping to nobody.
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    with (tmp_path / "pgbouncer.log").open("w") as log:
        proc = subprocess.Popen([binary, *user, str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_two_backends(port, db["NAME"], db["USER"] or "postgres", tmp_path / "pgbouncer.log")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_for_two_backends(port: int, name: str, user: str, log: Path) -> None:
    deadline = time.monotonic() + 15
    seen: set[int] = set()
    while time.monotonic() < deadline:
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, dbname=name, user=user)
        except psycopg2.OperationalError:
            time.sleep(0.1)
            continue
        conn.autocommit = True
        try:
            while time.monotonic() < deadline:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    seen.add(cursor.fetchone()[0])
                if len(seen) >= 2:
                    return
                time.sleep(0.1)
        finally:
            conn.close()
    raise AssertionError(f"PgBouncer did not serve two server sessions in turn (saw {seen}): {log.read_text()}")


@contextmanager
def through(port: int) -> Iterator[None]:
    """Django's connection goes through PgBouncer for the block."""
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(port))
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(HOST=saved["HOST"], PORT=saved["PORT"])


@pytest.mark.django_db(transaction=True)
def test_behind_pgbouncer_in_transaction_mode_the_api_answers_with_the_setting_off(
    alice_key, watched, pgbouncer: int, settings
) -> None:
    settings.KEYCHEST_DB_PREPARED_STATEMENTS = False
    with through(pgbouncer):
        for _ in range(6):
            api_calls(alice_key)
    assert Server.objects.filter(team=watched.team).count() == 7


@pytest.mark.django_db(transaction=True)
def test_behind_pgbouncer_in_transaction_mode_prepared_statements_break(pgbouncer: int) -> None:
    """Why the setting exists, and proof that this PgBouncer really moves a client between server
    sessions: prepared on one, the statement is missing on the other, and the second attempt
    (prepare again) meets the first session, which already holds it."""

    def add() -> int:
        with connection.cursor() as cursor:
            execute_prepared(cursor, "kc_test_pooled", "SELECT %s::int + 1", [1])
            return cursor.fetchone()[0]

    with through(pgbouncer):
        assert add() == 2
        with pytest.raises(DatabaseError, match=r"prepared statement .* already exists"):
            add()
