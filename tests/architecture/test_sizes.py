"""scripts/check_sizes.py keeps modules under 600 lines and functions under 80 (issue 20)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "scripts" / "check_sizes.py"


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), str(root)], capture_output=True, text=True, timeout=120)


def test_the_repository_is_within_the_limits() -> None:
    result = _check(ROOT)
    assert result.returncode == 0, result.stdout


def test_a_long_function_and_a_long_module_are_named(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(80))
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "views.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}")
    (tmp_path / "app" / "big.py").write_text("".join(f"Y{i} = {i}\n" for i in range(601)))
    (tmp_path / "app" / "migrations").mkdir()
    (tmp_path / "app" / "migrations" / "0001_initial.py").write_text(f"def forwards():\n{body}")
    result = _check(tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "app/big.py: module of 601 lines (limit 600)",
        "app/views.py:5: long is 81 lines (limit 80)",
    ]


def test_exactly_at_the_limits_passes(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(79))
    (tmp_path / "ok.py").write_text(f"def at_limit():\n{body}" + "".join(f"Y{i} = {i}\n" for i in range(600 - 80)))
    result = _check(tmp_path)
    assert result.returncode == 0, result.stdout
