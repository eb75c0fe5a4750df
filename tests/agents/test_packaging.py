"""`pip install ./agent` ships keychest_agent with the repository's kcproto and a console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_agent_kcproto_and_the_console_script(tmp_path: Path) -> None:
    # Built from a copy (the build writes next to its sources), with the repository's layout.
    shutil.copytree(ROOT / "agent", tmp_path / "agent", ignore=shutil.ignore_patterns("__pycache__", "build"))
    shutil.copytree(ROOT / "kcproto", tmp_path / "kcproto", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), "."],
        cwd=tmp_path / "agent",
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("keychest_agent-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "keychest_agent/cli.py" in names and "keychest_agent/queue.py" in names
    # The scanner's own protocol code, not a copy kept in agent/.
    for module in ("tlsprobe", "starttls", "netguard", "validation", "checks", "sweep", "agentwire", "observing"):
        assert f"kcproto/{module}.py" in names
        assert (ROOT / "kcproto" / f"{module}.py").read_bytes() == zipfile.ZipFile(wheel).read(f"kcproto/{module}.py")
    assert not (ROOT / "agent" / "kcproto").exists()
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "keychest-agent = keychest_agent.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Django" not in metadata and "pyOpenSSL" in metadata
