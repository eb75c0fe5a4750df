"""The auth epoch in PostgreSQL: a sequence whose value changes whenever a key's rights may have
changed, and a function that refuses a statement run under an older one (api/keycache.py)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

CREATE = """
CREATE SEQUENCE IF NOT EXISTS api_auth_epoch;
CREATE OR REPLACE FUNCTION kc_auth_epoch_is(expected bigint) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF (SELECT last_value FROM api_auth_epoch) IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'the API auth epoch changed' USING ERRCODE = 'KCAE1';
    END IF;
END
$$;
"""
DROP = """
DROP FUNCTION IF EXISTS kc_auth_epoch_is(bigint);
DROP SEQUENCE IF EXISTS api_auth_epoch;
"""


def _on_postgresql(sql: str) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("api", "0002_uploadedcertificate")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP), elidable=False)]
