"""Second opinions on every lab scenario: OpenSSL's and sslyze's verdicts beside KeyChest's.

OpenSSL 3 runs as `openssl s_client -verify_return_error -verify_hostname <host>` (a client that
checks the chain and the name, as browsers do) with the lab root as its only trust anchor.
sslyze runs its certificate check (cryptography's verifier, the lab root as "Supplied CA file")
and its TLS 1.2/1.3 scans; it needs a cryptography older than KeyChest's pin, so it runs from its
own virtual environment (`scripts/verdicts.py` makes one). KeyChest's verdict comes from the
caller (the spot check needs Django; this module does not).

A verdict is "refuses" when a current client would not complete the connection, "connects"
otherwise. `scripts/verdicts.py` writes the table into docs/scanner.md; the verdict test fails on
a disagreement with OpenSSL that the scenario does not explain (`Scenario.explained`).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lab.scenarios import Scenario
from lab.tls import Endpoint

CONNECTS, REFUSES, ERROR = "connects", "refuses", "error"
SSLYZE_VERSION = "6.3.1"
_VERIFY_ERROR = re.compile(r"verify error:num=\d+:(.*)")
_SSL_ERROR = re.compile(r"error:[0-9A-F]+:SSL routines:[^:]*:([^:]*)")


@dataclass(frozen=True)
class Opinion:
    """One tool's verdict on one scenario, and its words."""

    verdict: str  # CONNECTS, REFUSES or ERROR (the tool itself failed)
    detail: str = ""


@dataclass
class Row:
    scenario: Scenario
    ours: Opinion
    codes: list[str] = field(default_factory=list)
    tools: dict[str, Opinion] = field(default_factory=dict)

    def agreement(self, tool: str) -> str:
        """ "agrees", "explained" or "DISAGREES" (with no reason given)."""
        opinion = self.tools.get(tool)
        if opinion is None:
            return "not run"
        if opinion.verdict == self.ours.verdict:
            return "agrees"
        return "explained" if tool.lower() in self.scenario.explained else "DISAGREES"


def openssl(scenario: Scenario, endpoint: Endpoint, ca_file: Path, *, timeout: float = 15) -> Opinion:
    command = [
        "openssl",
        "s_client",
        "-connect",
        f"{endpoint.host}:{endpoint.port}",
        "-servername",
        scenario.host,
        "-verify_return_error",
        "-verify_hostname",
        scenario.host,
        "-CAfile",
        str(ca_file),
        "-no-CApath",
        "-brief",
    ]
    if scenario.protocol != "tls":
        command += ["-starttls", scenario.protocol]
    done = subprocess.run(command, input=b"", capture_output=True, timeout=timeout, check=False)
    text = done.stderr.decode(errors="replace") + done.stdout.decode(errors="replace")
    if done.returncode == 0:
        return Opinion(CONNECTS, "Verification: OK")
    found = _VERIFY_ERROR.search(text) or _SSL_ERROR.search(text)
    return Opinion(REFUSES, found.group(1).strip() if found else f"exit {done.returncode}")


def sslyze(python: Path, scenario: Scenario, endpoint: Endpoint, ca_file: Path, *, timeout: float = 120) -> Opinion:
    """sslyze's certificate check and TLS 1.2/1.3 scans, from the interpreter of its own venv."""
    with tempfile.TemporaryDirectory(prefix="keychest-sslyze-") as folder:
        out = Path(folder) / "out.json"
        command = [
            str(python),
            "-m",
            "sslyze",
            f"--json_out={out}",
            "--quiet",
            "--certinfo",
            f"--certinfo_ca_file={ca_file}",
            "--tlsv1_2",
            "--tlsv1_3",
            f"{scenario.host}:{endpoint.port}{{{endpoint.host}}}",
        ]
        if scenario.protocol != "tls":
            command += ["--starttls", scenario.protocol]
        subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        try:
            report = json.loads(out.read_text())["server_scan_results"][0]
        except (OSError, ValueError, KeyError, IndexError):
            return Opinion(ERROR, "no report")
    if report["scan_status"] != "COMPLETED":
        trace = (report.get("connectivity_error_trace") or "").strip().splitlines()
        return Opinion(REFUSES, f"no connection: {trace[-1][:120] if trace else report['scan_status']}")
    result = report["scan_result"]
    modern = any(
        result[key]["status"] == "COMPLETED" and result[key]["result"]["accepted_cipher_suites"]
        for key in ("tls_1_2_cipher_suites", "tls_1_3_cipher_suites")
    )
    certinfo = result["certificate_info"]
    if certinfo["status"] != "COMPLETED":
        trace = (certinfo.get("error_trace") or "").strip().splitlines()
        return Opinion(ERROR, f"certificate check failed: {trace[-1][:120] if trace else certinfo['status']}")
    deployment = certinfo["result"]["certificate_deployments"][0]
    supplied = [v for v in deployment["path_validation_results"] if v["trust_store"]["name"] == "Supplied CA file"]
    if not modern:
        return Opinion(REFUSES, "neither TLS 1.2 nor TLS 1.3 accepted")
    if not supplied or not supplied[0]["was_validation_successful"]:
        error = supplied[0].get("validation_error") if supplied else "no validation"
        return Opinion(REFUSES, _short(error or ""))
    return Opinion(CONNECTS, "validation OK")


def _short(message: str) -> str:
    text = re.sub(r"\s*\(encountered processing <Certificate.*$", "", message, flags=re.DOTALL)
    return text.removeprefix("validation failed: ")[:120]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[Row], tools: list[str]) -> str:
    """The Markdown table for docs/scanner.md."""
    head = ["scenario", "served", "KeyChest (findings)", *(t for t in tools), "why they differ"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        ours = f"{row.ours.verdict} ({', '.join(row.codes) or 'none'})"
        cells = [f"`{row.scenario.label}`", row.scenario.what, ours]
        for tool in tools:
            opinion = row.tools.get(tool)
            cells.append(f"{opinion.verdict}: {opinion.detail} — {row.agreement(tool)}" if opinion else "not run")
        named = {t.lower(): t for t in tools}
        why = "; ".join(f"{named[tool]}: {text}" for tool, text in row.scenario.explained.items() if tool in named)
        lines.append("| " + " | ".join(_cell(c) for c in [*cells, why]) + " |")
    return "\n".join(lines)


def summary(rows: list[Row], tools: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for tool in tools:
        counts: dict[str, int] = {}
        for row in rows:
            key = row.agreement(tool)
            counts[key] = counts.get(key, 0) + 1
        out[tool] = counts
    return out
