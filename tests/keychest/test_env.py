from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from keychest.env import env_bool, env_int, env_list, parse_database_url, parse_email_url


def test_env_bool_reads_common_spellings_and_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False)]:
        monkeypatch.setenv("X_FLAG", value)
        assert env_bool("X_FLAG") is expected
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env_bool("X_FLAG")
    monkeypatch.delenv("X_FLAG")
    assert env_bool("X_FLAG", True) is True


def test_env_int_validates_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_NUM", "12")
    assert env_int("X_NUM", 1, minimum=1) == 12
    monkeypatch.setenv("X_NUM", "twelve")
    with pytest.raises(ImproperlyConfigured):
        env_int("X_NUM", 1)
    monkeypatch.setenv("X_NUM", "0")
    with pytest.raises(ImproperlyConfigured):
        env_int("X_NUM", 1, minimum=1)


def test_env_list_splits_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_LIST", " a.example, b.example ,,")
    assert env_list("X_LIST") == ["a.example", "b.example"]


def test_database_urls() -> None:
    base = Path("/srv/app")
    assert parse_database_url("sqlite:///var/db.sqlite3", base_dir=base)["NAME"] == "/srv/app/var/db.sqlite3"
    assert parse_database_url("sqlite:////tmp/x.sqlite3", base_dir=base)["NAME"] == "/tmp/x.sqlite3"
    pg = parse_database_url("postgres://kc:p%40ss@db.internal:6432/keychest?sslmode=require", base_dir=base)
    assert pg["ENGINE"] == "keychest.db.postgresql"  # the health check without a round trip
    assert pg["CONN_HEALTH_CHECKS"] is True
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "kc",
        "p@ss",
        "db.internal",
        "6432",
        "keychest",
    )
    assert pg["OPTIONS"] == {"sslmode": "require", "options": "-c jit=off"}
    own = parse_database_url("postgres://h/db?options=-c%20statement_timeout%3D5000", base_dir=base)
    assert own["OPTIONS"] == {"options": "-c statement_timeout=5000"}  # the URL's own options win
    for scheme in ("postgresql", "pgsql"):
        assert parse_database_url(f"{scheme}://h/db", base_dir=base)["ENGINE"] == "keychest.db.postgresql"
    assert parse_database_url("sqlite:///x.db", base_dir=base)["ENGINE"] == "django.db.backends.sqlite3"
    with pytest.raises(ImproperlyConfigured):
        parse_database_url("mysql://x/y", base_dir=base)
    with pytest.raises(ImproperlyConfigured):
        parse_database_url("postgres://host/", base_dir=base)


def test_email_urls() -> None:
    smtp = parse_email_url("smtp+tls://user:secret@mail.example:2525")
    assert smtp.backend.endswith("smtp.EmailBackend")
    assert (smtp.host, smtp.port, smtp.user, smtp.password, smtp.use_tls, smtp.use_ssl) == (
        "mail.example",
        2525,
        "user",
        "secret",
        True,
        False,
    )
    assert parse_email_url("smtp://localhost").port == 25
    assert parse_email_url("smtps://h").use_ssl
    assert parse_email_url("console://").backend.endswith("console.EmailBackend")
    filebased = parse_email_url("file:///tmp/mails")
    assert filebased.backend.endswith("filebased.EmailBackend")
    assert filebased.file_path == "/tmp/mails"
    with pytest.raises(ImproperlyConfigured):
        parse_email_url("pigeon://coop")


@pytest.mark.django_db
def test_postgresql_connections_run_without_jit() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only (DATABASE_URL)")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
