"""The verdict table: KeyChest's spot check, OpenSSL and sslyze on every lab scenario.

    .venv/bin/python scripts/verdicts.py            # writes the table into docs/scanner.md
    .venv/bin/python scripts/verdicts.py --no-sslyze --check   # OpenSSL only; exit 1 on an unexplained disagreement

sslyze pins a cryptography older than KeyChest's (sslyze 6.3.1 needs cryptography>=43,<47;
KeyChest pins 50.0.2), so it cannot live in KeyChest's virtual environment: the script makes its
own in `var/sslyze-venv` (`python -m venv`, `pip install sslyze==6.3.1`) on first use. The
spot check runs against a throw-away test database (PostgreSQL when DATABASE_URL is set).
`tests/monitors/test_verdicts.py` runs the same comparison with OpenSSL in every test run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab import verdicts  # noqa: E402
from lab.scenarios import SCENARIOS, Scenario  # noqa: E402
from lab.tls import Endpoint, Lab  # noqa: E402

DOC = ROOT / "docs" / "scanner.md"
BEGIN, END = "<!-- verdicts:begin -->", "<!-- verdicts:end -->"
SSLYZE_VENV = ROOT / "var" / "sslyze-venv"


def ours(scenario: Scenario, endpoint: Endpoint, ca_pem: str) -> tuple[verdicts.Opinion, list[str]]:
    """KeyChest's spot check of the scenario (Django set up, a database available)."""
    from kcproto.checks import clients_refuse
    from monitors.scanning import ScanConfig
    from monitors.spotcheck import spotcheck

    config = ScanConfig.from_settings(allow_private=True, deadline=5.0, connect_timeout=2.0)
    result = spotcheck(
        target=f"{scenario.host}:{endpoint.port}",
        ip=endpoint.host,
        protocol=scenario.protocol,
        ca_pem=ca_pem,
        config=config,
        check_hsts=False,
    )
    specs = result.findings
    verdict = verdicts.REFUSES if clients_refuse(specs) else verdicts.CONNECTS
    errors = [s.message for s in specs if s.severity in ("error", "critical")]
    return verdicts.Opinion(verdict, errors[0][:120] if errors else ""), sorted({s.code for s in specs})


def rows(lab: Lab, *, sslyze_python: Path | None) -> list[verdicts.Row]:
    ca_file = lab.folder / "verdicts-root.pem"
    ca_file.write_text(lab.root_pem)
    out: list[verdicts.Row] = []
    for scenario in SCENARIOS:
        endpoint = scenario.serve(lab)
        opinion, codes = ours(scenario, endpoint, lab.root_pem)
        row = verdicts.Row(scenario, opinion, codes)
        row.tools["OpenSSL"] = verdicts.openssl(scenario, endpoint, ca_file)
        if sslyze_python is not None:
            row.tools["sslyze"] = verdicts.sslyze(sslyze_python, scenario, endpoint, ca_file)
        out.append(row)
        print(
            f"{scenario.label}: {row.ours.verdict} / " + ", ".join(f"{t} {o.verdict}" for t, o in row.tools.items()),
            file=sys.stderr,
        )
    return out


def sslyze_python() -> Path:
    python = SSLYZE_VENV / "bin" / "python"
    # Fixed commands on our own paths (no user input): S603 does not apply.
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SSLYZE_VENV)], check=True)  # noqa: S603
    check = subprocess.run([str(python), "-m", "sslyze", "--help"], capture_output=True, check=False)  # noqa: S603
    if check.returncode != 0:
        install = [str(python), "-m", "pip", "install", "--quiet", f"sslyze=={verdicts.SSLYZE_VERSION}"]
        subprocess.run(install, check=True)  # noqa: S603
    return python


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-sslyze", action="store_true", help="OpenSSL only (no sslyze venv)")
    parser.add_argument("--check", action="store_true", help="do not write the doc; exit 1 on a disagreement")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keychest.settings_test")
    import django

    django.setup()
    from django.db import connection

    python = None if args.no_sslyze else sslyze_python()
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        with Lab() as lab:
            table_rows = rows(lab, sslyze_python=python)
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)
    tools = ["OpenSSL"] if python is None else ["OpenSSL", "sslyze"]
    summary = verdicts.summary(table_rows, tools)
    print(json.dumps({"scenarios": len(table_rows), "agreement": summary}, indent=2))
    if not args.check:
        write_doc(verdicts.table(table_rows, tools))
    return 1 if any("DISAGREES" in counts for counts in summary.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
