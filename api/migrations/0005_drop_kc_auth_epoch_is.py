"""The function that let a statement carry the auth epoch check (`kc_auth_epoch_is`, migration
0003) is no longer called: the API reads the epoch before its view runs (issue 20, docs/api.md).
The sequence stays."""

from __future__ import annotations

from typing import Any

from django.db import migrations

DROP = "DROP FUNCTION IF EXISTS kc_auth_epoch_is(bigint);"
CREATE = """
CREATE OR REPLACE FUNCTION kc_auth_epoch_is(expected bigint) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF (SELECT last_value FROM api_auth_epoch) IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'the API auth epoch changed' USING ERRCODE = 'KCAE1';
    END IF;
END
$$;
"""


def _on_postgresql(sql: str) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("api", "0004_models_move_to_their_apps")]

    operations = [migrations.RunPython(_on_postgresql(DROP), _on_postgresql(CREATE), elidable=False)]
