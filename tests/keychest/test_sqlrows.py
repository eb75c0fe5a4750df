"""Prepared statements (keychest.sqlrows.execute_prepared) when the session loses them or already
holds them, as it does behind PgBouncer in transaction mode, after DISCARD ALL or DEALLOCATE ALL.

The tests do to the test's own connection what a pooler does to it: `DEALLOCATE ALL` between two
calls (the next EXECUTE meets a session without the statement, SQLSTATE 26000), or a PREPARE of
the statement behind the code's back (its own PREPARE meets one already there, 42P05).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext

import psycopg2
import pytest
from django.db import DataError, connection, transaction
from django.test.utils import CaptureQueriesContext

from keychest.accounts.models import Team
from keychest.sqlrows import execute_prepared, insert_or_find, prepared_statement

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="server-side prepared statements are PostgreSQL's"),
    # Autocommit as requests run, and transactions that really commit.
    pytest.mark.django_db(transaction=True),
]

NAME = "kc_test_sum"
SQL = "SELECT %s::int + %s::int"


@pytest.fixture(autouse=True)
def new_session() -> Iterator[None]:
    """Each test starts on a new connection: no statement prepared, none remembered."""
    connection.close()
    yield
    connection.close()


def add(a: int, b: int) -> int:
    with connection.cursor() as cursor:
        execute_prepared(cursor, NAME, SQL, [a, b])
        return cursor.fetchone()[0]


def held() -> set[str]:
    """Names of the statements this session holds."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


def run(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def sent(queries: CaptureQueriesContext) -> list[str]:
    """The first words of each statement sent ("PREPARE", "EXECUTE", "SAVEPOINT", ...)."""
    return [query["sql"].split()[0] for query in queries.captured_queries]


def committed_team_names() -> set[str]:
    """Team names another session sees: what was really committed."""
    db = connection.settings_dict
    other = psycopg2.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"] or None
    )
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT name FROM accounts_team")
            return {row[0] for row in cursor.fetchall()}
    finally:
        other.close()


def test_a_statement_is_prepared_with_its_first_execution_then_only_executed() -> None:
    statement = prepared_statement(NAME, SQL)
    with CaptureQueriesContext(connection) as queries:
        assert add(1, 2) == 3
        assert add(20, 22) == 42
    assert [q["sql"] for q in queries.captured_queries] == [
        f"PREPARE {statement.name} AS SELECT $1::int + $2::int; EXECUTE {statement.name}(1, 2)",
        f"EXECUTE {statement.name}(20, 22)",
    ]
    assert statement.name in held()


def test_the_name_changes_with_the_sql_so_a_held_name_is_always_this_sql() -> None:
    assert prepared_statement(NAME, SQL).name != prepared_statement(NAME, SQL + " + 0").name
    assert prepared_statement(NAME, SQL).name.startswith(f"{NAME}_")


def test_after_deallocate_all_it_prepares_again_in_autocommit() -> None:
    assert add(1, 2) == 3
    run("DEALLOCATE ALL")
    with CaptureQueriesContext(connection) as queries:
        assert add(3, 4) == 7
        assert add(5, 6) == 11
    # The failed EXECUTE, then PREPARE and EXECUTE in one message; then EXECUTE alone again.
    assert sent(queries) == ["EXECUTE", "PREPARE", "EXECUTE"]
    assert prepared_statement(NAME, SQL).name in held()
    assert connection.get_autocommit()


def test_a_statement_prepared_behind_its_back_counts_as_prepared_in_autocommit() -> None:
    run(f"PREPARE {prepared_statement(NAME, SQL).name} AS SELECT $1::int + $2::int")
    with CaptureQueriesContext(connection) as queries:
        assert add(1, 2) == 3
        assert add(3, 4) == 7
    # Its PREPARE (with the EXECUTE behind it in the same message) fails; then EXECUTE alone.
    assert sent(queries) == ["PREPARE", "EXECUTE", "EXECUTE"]


@pytest.mark.parametrize("disruption", ["deallocate all", "prepared behind its back"])
def test_in_a_transaction_it_recovers_and_the_transaction_commits_its_other_writes(disruption: str) -> None:
    if disruption == "deallocate all":
        assert add(1, 1) == 2  # prepared and remembered; the transaction's EXECUTE will miss it
    with transaction.atomic():
        Team.objects.create(name="before")
        if disruption == "deallocate all":
            run("DEALLOCATE ALL")
        else:
            run(f"PREPARE {prepared_statement(NAME, SQL).name} AS SELECT $1::int + $2::int")
        with CaptureQueriesContext(connection) as queries:
            assert add(2, 3) == 5
        assert insert_or_find(Team(name="prepared insert"), name="kc_test_team", unique=("uuid",)) == (True, None)
        Team.objects.create(name="after")
    # Each attempt runs under a savepoint; the failed one is rolled back to it.
    first, second = ("EXECUTE", "PREPARE") if disruption == "deallocate all" else ("PREPARE", "EXECUTE")
    assert sent(queries) == ["SAVEPOINT", first, "ROLLBACK", "RELEASE", "SAVEPOINT", second, "RELEASE"]
    assert committed_team_names() == {"before", "prepared insert", "after"}


@pytest.mark.parametrize("in_transaction", [False, True])
def test_an_error_of_the_statement_itself_is_raised_and_never_run_again(in_transaction: bool) -> None:
    # nextval() is not rolled back: the sequence counts how often the statement really ran.
    run("CREATE TEMPORARY SEQUENCE kc_test_runs")

    def runs_then_fails() -> None:
        with connection.cursor() as cursor:
            execute_prepared(cursor, "kc_test_fails", "SELECT nextval('kc_test_runs') / %s", [0])

    def runs() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT last_value FROM kc_test_runs")
            return cursor.fetchone()[0]

    # First while unprepared (PREPARE succeeds, EXECUTE fails), then while held but not
    # remembered (42P05, then EXECUTE fails), then remembered (EXECUTE fails).
    for expected in (1, 2, 3):
        with transaction.atomic() if in_transaction else nullcontext():
            with pytest.raises(DataError, match="division by zero"):
                runs_then_fails()
            if in_transaction:
                assert not connection.needs_rollback  # only the savepoint was rolled back
        assert runs() == expected


def test_with_the_setting_off_no_statement_is_prepared(settings) -> None:
    settings.KEYCHEST_DB_PREPARED_STATEMENTS = False
    with CaptureQueriesContext(connection) as queries:
        assert add(1, 2) == 3
        with transaction.atomic():
            assert insert_or_find(Team(name="plain"), name="kc_test_team", unique=("uuid",)) == (True, None)
    assert sent(queries)[0] == "SELECT"
    assert [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("PREPARE", "EXECUTE"))] == []
    assert held() == set()
    assert committed_team_names() == {"plain"}
