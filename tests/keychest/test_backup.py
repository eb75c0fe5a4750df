"""The backup and the restore drill work end to end on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL"),
    pytest.mark.skipif(shutil.which("pg_dump") is None, reason="needs pg_dump"),
]


@pytest.mark.django_db(transaction=True)
def test_a_backup_restores_with_every_row(people, tmp_path: Path) -> None:
    db = settings.DATABASES["default"]
    # The test database, as a URL the scripts understand.
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{connection.settings_dict['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "PGPASSWORD": db.get("PASSWORD") or ""}
    dump = subprocess.run(
        ["scripts/backup.sh", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert dump.returncode == 0, dump.stderr
    dump_file = dump.stdout.strip()
    assert Path(dump_file).stat().st_size > 0
    drill = subprocess.run(
        ["scripts/restore_drill.sh", dump_file], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert "every row count matches" in drill.stdout
