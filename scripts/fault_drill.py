"""`make faults`: run the whole KeyChest stack on this machine, inject faults while work is in
flight, count what was lost or doubled, and write docs/reliability.md (issue 21).

The drill starts its own PostgreSQL cluster (`initdb` into a temporary folder) and Redis server on
private ports, never the machine's shared ones; the lab (TLS servers on 127.0.0.x, lab DNS, a lab
CT log, an aiosmtpd SMTP sink, a webhook receiver) in this process; and the product: gunicorn,
two Celery workers, beat and the CT follower (`manage.py ct_ingest --follow`). A team, its
servers, a watched domain and two channels (email, webhook) are set up through the public API
and pages, as a user would. Then each fault is injected while scans, CT ingestion and deliveries
run, and the outcome is checked once the stack is left alone. Load (concurrent API clients) and
a soak (RSS of every process each minute) run last.

    make faults                                   # the full drill (about an hour)
    python scripts/fault_drill.py --quick         # the CI drill: one fault of each kind, small lab
    python scripts/fault_drill.py --only worker_scan,redis --no-write

Nothing leaves 127.0.0.0/8. Exit status 0 when every row holds.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from faultdrill.common import BASE
from faultdrill.drill import Drill


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM: stop like Ctrl-C, so the drill's own services are stopped


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupted)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CI drill: small lab, short outages, short soak")
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default=set(), help="comma-separated fault names")
    parser.add_argument("--servers", type=int, default=None)
    parser.add_argument("--slow", type=int, default=None, help="silent lab servers (scans that take the deadline)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--interval", type=int, default=300)
    parser.add_argument("--alerts", type=int, default=None)
    parser.add_argument("--ct-entries", type=int, default=None)
    parser.add_argument("--smtp-minutes", type=float, default=None)
    parser.add_argument("--ctlog-seconds", type=float, default=None)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--load-seconds", type=float, default=None)
    parser.add_argument("--soak-minutes", type=float, default=None)
    parser.add_argument("--output", default=str(BASE / "docs" / "reliability.md"), help="where the report goes")
    parser.add_argument("--no-write", action="store_true", help="print the table, write no report")
    parser.add_argument("--keep", action="store_true", help="keep the drill folder (logs, database)")
    args = parser.parse_args()
    quick = args.quick
    defaults = {
        "servers": 30 if quick else 200,
        "slow": 4 if quick else 10,
        "batch": 10 if quick else 50,
        "alerts": 3 if quick else 10,
        "ct_entries": 300 if quick else 3000,
        "smtp_minutes": 0.5 if quick else 10,
        "ctlog_seconds": 20 if quick else 300,
        "load_seconds": 15 if quick else 60,
        "soak_minutes": 3 if quick else 30,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if quick:
        args.clients = min(args.clients, 20)
    os.chdir(BASE)
    return Drill(args).run()


if __name__ == "__main__":
    sys.exit(main())
