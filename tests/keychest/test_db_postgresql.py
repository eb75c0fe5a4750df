"""KeyChest's PostgreSQL backend: the connection health check that asks the socket first
(keychest/db/postgresql/base.py).

Whether the check sent a query is read from the server: `pg_stat_activity.query` of the
connection's backend holds the last statement it received, watched from a second connection.
Each test runs in autocommit (as requests do) on a connection of its own, closed afterwards, so
a backend a test terminates is never the one the test database is flushed through.
"""

from __future__ import annotations

import itertools
import select
from collections.abc import Iterator
from wsgiref.util import setup_testing_defaults

import psycopg2
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection, connections, transaction
from django.db.backends.postgresql.base import DatabaseWrapper as DjangoPostgreSQLWrapper

from keychest.db.postgresql.base import DatabaseWrapper

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="KeyChest's PostgreSQL backend needs PostgreSQL (DATABASE_URL)"
    ),
    pytest.mark.django_db(transaction=True),
]

_marks = itertools.count(1)


@pytest.fixture(autouse=True)
def new_session() -> Iterator[None]:
    """A connection of the test's own: one a test kills is closed, not flushed through."""
    connection.close()
    yield
    connection.close()


@pytest.fixture
def observer() -> Iterator[psycopg2.extensions.connection]:
    """A second session, which watches the test's backend and kills it."""
    db = connection.settings_dict
    other = psycopg2.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"] or None
    )
    other.autocommit = True
    try:
        yield other
    finally:
        other.close()


def mark() -> tuple[int, str]:
    """Send a statement only this test sends; the backend's pid and that statement."""
    sql = f"SELECT 'kc-health-check-{next(_marks)}'"
    with connection.cursor() as cursor:
        cursor.execute(sql)
    return connection.connection.info.backend_pid, sql


def last_query(observer: psycopg2.extensions.connection, pid: int) -> str | None:
    with observer.cursor() as cursor:
        cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return None if row is None else row[0]


def wait_readable(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    assert poller.poll(5000), "nothing arrived on the connection's socket within 5 s"


def get_as_a_wsgi_server_would(path: str) -> tuple[str, bytes]:
    """One request through Django's WSGI handler: request_started (close_old_connections, which
    re-arms the health check), the view, request_finished. The test client disconnects
    close_old_connections, so it would never run the health check."""
    environ: dict[str, object] = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    statuses: list[str] = []
    response = WSGIHandler()(environ, lambda status, headers, exc_info=None: statuses.append(status))
    try:
        body = b"".join(response)
    finally:
        response.close()
    return statuses[0], body


def test_the_project_runs_on_this_backend_still_named_postgresql() -> None:
    assert isinstance(connections["default"], DatabaseWrapper)
    assert connection.vendor == "postgresql"
    assert connection.health_check_enabled


def test_an_idle_connection_is_usable_without_a_query(observer) -> None:
    pid, sql = mark()
    assert connection.is_usable() is True
    assert connection.is_usable() is True
    assert last_query(observer, pid) == sql  # nothing reached the server
    # The instrument sees the check it replaces: Django's own sends SELECT 1.
    assert DjangoPostgreSQLWrapper.is_usable(connection) is True
    assert last_query(observer, pid) == "SELECT 1"


def test_a_terminated_backend_is_unusable(observer) -> None:
    pid, _ = mark()
    with observer.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_readable(connection.connection.fileno())
    assert connection.is_usable() is False


def test_the_next_request_after_a_termination_answers_on_a_new_backend(observer) -> None:
    pid, _ = mark()
    with observer.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_readable(connection.connection.fileno())
    status, body = get_as_a_wsgi_server_would("/healthz")
    # /healthz answers 503 when its query fails: on the dead connection it would have.
    assert (status, body) == ("200 OK", b'{"status": "ok"}')
    assert connection.connection.info.backend_pid != pid
    assert last_query(observer, pid) is None  # the old backend is gone


def test_something_readable_on_a_healthy_connection_runs_the_real_check(observer) -> None:
    with connection.cursor() as cursor:
        cursor.execute("LISTEN kc_health_check")
    pid, _ = mark()
    with observer.cursor() as cursor:
        cursor.execute("NOTIFY kc_health_check, 'hello'")
    wait_readable(connection.connection.fileno())
    assert connection.is_usable() is True
    assert last_query(observer, pid) == "SELECT 1"
    assert [n.payload for n in connection.connection.notifies] == ["hello"]  # read by the SELECT 1


def test_after_an_error_the_real_check_runs(observer) -> None:
    pid, _ = mark()
    connection.errors_occurred = True  # as django.db.utils sets it for OperationalError & co.
    assert connection.is_usable() is True
    assert last_query(observer, pid) == "SELECT 1"


def test_inside_a_transaction_the_real_check_runs(observer) -> None:
    with transaction.atomic():
        pid, _ = mark()
        assert connection.is_usable() is True
        assert last_query(observer, pid) == "SELECT 1"


def test_without_poll_the_real_check_runs(observer, monkeypatch: pytest.MonkeyPatch) -> None:
    pid, _ = mark()
    monkeypatch.delattr(select, "poll")  # as on Windows
    assert connection.is_usable() is True
    assert last_query(observer, pid) == "SELECT 1"


def test_a_connection_closed_on_the_client_side_is_unusable() -> None:
    mark()
    connection.connection.close()
    assert connection.is_usable() is False
