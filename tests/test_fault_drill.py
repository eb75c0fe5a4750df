"""The shortened fault drill (issue 21) on every CI run: the real stack (gunicorn, two Celery
workers, beat, the CT follower) on the drill's own PostgreSQL and Redis, one fault of each kind
on a small lab, a short load and soak. `make faults` runs the full drill."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow]


def test_the_short_fault_drill_loses_and_doubles_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    report = tmp_path / "reliability.md"
    drill = subprocess.Popen(
        [sys.executable, "scripts/fault_drill.py", "--quick", "--output", str(report)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = drill.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        drill.terminate()  # SIGTERM: the drill stops its own PostgreSQL, Redis and processes
        stdout, stderr = drill.communicate(timeout=120)
    run = subprocess.CompletedProcess(drill.args, drill.returncode, stdout, stderr)
    output = run.stdout[-6000:] + run.stderr[-3000:]
    assert run.returncode == 0, output
    table = report.read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(("| fault", "| ---"))]
    assert len(rows) == 9, table  # every kind of fault ran
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[5] == "0" and cells[6] == "0" and cells[8] == "yes", row  # lost, doubled, holds
    assert re.search(r'"p99_ms": [0-9.]+', table) and re.search(r'"slope_mib_per_min"', table), table
