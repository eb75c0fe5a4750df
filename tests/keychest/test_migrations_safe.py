"""Migrations must never destroy data silently (the old service lost 40 % of its accounts).

An operation that drops a table or a column, or renames one, fails this test unless its
migration module says why it is safe: `DESTRUCTIVE_OK = "reason …"`.
"""

from __future__ import annotations

import importlib

import pytest
from django.db import connection
from django.db.migrations import operations as ops
from django.db.migrations.loader import MigrationLoader

DESTRUCTIVE = (ops.RemoveField, ops.DeleteModel, ops.RenameField, ops.RenameModel)
OUR_APPS = {"accounts", "monitors", "certificates", "notifications", "api"}


@pytest.mark.django_db
def test_no_migration_drops_data_without_saying_why() -> None:
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    offenders = []
    for (app, name), migration in loader.disk_migrations.items():
        if app not in OUR_APPS:
            continue
        module = importlib.import_module(migration.__module__)
        if getattr(module, "DESTRUCTIVE_OK", ""):
            continue
        for operation in migration.operations:
            if isinstance(operation, DESTRUCTIVE):
                offenders.append(f"{app}.{name}: {operation.describe()}")
    assert not offenders, "destructive migrations without DESTRUCTIVE_OK:\n" + "\n".join(offenders)


@pytest.mark.django_db
def test_the_graph_has_one_leaf_per_app() -> None:
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    conflicts = loader.detect_conflicts()
    assert not conflicts, f"conflicting migrations (merge them): {conflicts}"
