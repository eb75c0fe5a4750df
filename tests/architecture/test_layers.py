"""The layer contracts (pyproject.toml, docs/architecture.md) hold, and they do catch a break."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = (
    "kcproto",
    "keychest",
    "events",
    "certificates",
    "monitors",
    "agents",
    "discovery",
    "notifications",
    "api",
    "dashboard",
    "health",
)


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_project_keeps_its_layers() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def _copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        if (ROOT / package).is_dir():
            shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "agent" / "keychest_agent",
        tmp_path / "agent" / "keychest_agent",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    with (copy / "certificates" / "models.py").open("a") as models:
        models.write("\nfrom monitors.models import Server  # noqa\n")
    result = _lint(copy)
    assert result.returncode == 1
    assert "certificates is not allowed to import monitors" in result.stdout


def test_django_in_protocol_code_breaks_its_contract(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    with (copy / "kcproto" / "names.py").open("a") as names:
        names.write("\nimport django.conf  # noqa\n")
    result = _lint(copy)
    assert result.returncode == 1
    assert "kcproto is not allowed to import django" in result.stdout


def test_a_cycle_inside_an_app_breaks_its_contract(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    with (copy / "notifications" / "wording.py").open("a") as wording:
        wording.write("\nfrom notifications import transports  # noqa\n")
    result = _lint(copy)
    assert result.returncode == 1
    assert "No cycles are allowed in notifications" in result.stdout


def test_django_in_the_standalone_agent_breaks_its_contract(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    with (copy / "agent" / "keychest_agent" / "scan.py").open("a") as scan:
        scan.write("\nimport django.conf  # noqa\n")
    result = _lint(copy)
    assert result.returncode == 1
    assert "agent.keychest_agent is not allowed to import django" in result.stdout
