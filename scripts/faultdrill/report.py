"""The fault drill's result rows and docs/reliability.md (issue 21)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from faultdrill.common import BASE


@dataclass
class Row:
    fault: str
    injected: str
    must_hold: str
    recovery_s: float | None = None
    bound_s: float = 0.0
    lost: int = 0
    doubled: int = 0
    manual: str = "none"
    notes: str = ""
    ok: bool = False


def _commit() -> str:
    try:
        git = ["git", "rev-parse", "--short", "HEAD"]
        return subprocess.run(git, cwd=BASE, capture_output=True, text=True).stdout.strip()  # noqa: S603
    except OSError:
        return "unknown"


def render(rows: list[Row], figures: dict[str, Any], args: argparse.Namespace) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability: the fault drill",
        "",
        f"Written by `scripts/fault_drill.py` ({'--quick' if args.quick else 'make faults'}) on {when}, commit "
        f"`{_commit()}`, on a 2-core machine shared with other work. Do not edit by hand: run the drill.",
        "",
        "The drill runs the real stack on this machine only: gunicorn, two Celery workers and beat, the CT",
        "follower, its own PostgreSQL cluster (initdb, private port) and Redis server (private port), and",
        f"the lab: {args.servers} TLS servers on 127.0.0.x ({args.slow} of them silent, so every scan of them",
        "holds its connection to the deadline and a batch is in flight long enough to kill), lab DNS, the",
        "lab CT log, an aiosmtpd SMTP sink and a webhook receiver. The team, its servers, the watched",
        "domain and the two channels (email, webhook) were set up through the public API and pages.",
        "Alerts are new certificates for the watched domain logged in the lab CT log; each must reach",
        'both channels exactly once. A scan "doubled" is one lab server ever holding two scan',
        "connections at once (legacy and second-key probes are off in the drill, so one scan is one",
        "connection). Recovery is measured from the fault's end (or the kill) to the last item done.",
        "",
        "| fault | injected when | what must hold | recovery (s) | bound (s) | lost | doubled | manual steps | holds | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        rec = "—" if r.recovery_s is None else f"{r.recovery_s:g}"
        lines.append(
            f"| {r.fault} | {r.injected} | {r.must_hold} | {rec} | {r.bound_s:g} | {r.lost} | {r.doubled} | "
            f"{r.manual} | {'yes' if r.ok else '**no**'} | {r.notes} |"
        )
    lines += ["", "## Figures", "", "```json", json.dumps(figures, indent=2, default=str), "```", ""]
    lines += [
        "## Bounds and guarantees",
        "",
        f"- Scans: a batch's claim is a {figures.get('settings', {}).get('claim_lease_s', 40)} s lease renewed every",
        "  quarter lease while it scans (monitors/scan_claims.py); a killed worker's servers are claimable",
        f"  one lease later and beat (every {figures.get('settings', {}).get('beat_s', 60)} s) queues them: lease + one",
        "  beat pass + the scan itself (+ 30 s of queueing on this machine) is the bound. Redis'",
        "  visibility timeout (1,620 s) is longer than any task run, so a running task is never handed out twice.",
        "- Processes that exit are restarted by a supervisor, as compose's `restart: unless-stopped` does:",
        "  a Celery worker can exit when Redis restarts while it holds messages (kombu 5.7's reconnect",
        "  path); rows that say so count it, and it loses nothing: the work lives in database rows.",
        "- Deliveries are at least once on the wire, exactly once by key: a webhook event carries its",
        "  `idempotency_key` (the event's UUID, stable across retries and channels) and an alert email keeps",
        "  one `Message-ID` per delivery and recipient, so a resend after a crash (the receiver answered,",
        '  the worker died before recording it) is recognisably the same message. "Doubled" counts',
        "  distinct keys or Message-IDs for one alert; repeats of the same one are in the notes.",
        "",
        f"Run with: `python scripts/fault_drill.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
    ]
    return "\n".join(lines)
