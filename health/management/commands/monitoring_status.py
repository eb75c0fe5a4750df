"""`manage.py monitoring_status [--json]`: is the monitoring itself working?

Exit status as monitoring plugins expect: 0 ok, 1 warn, 2 fail."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from health.checks import Status, system_status, worst

EXIT_CODES = {Status.OK: 0, Status.WARN: 1, Status.FAIL: 2}


class Command(BaseCommand):
    help = "Freshness of heartbeat, scans, CT logs, deliveries, reports and canary; exit 0 ok, 1 warn, 2 fail."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the checks as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        checks = system_status(now)
        overall = worst([c.status for c in checks])
        if options["json"]:
            payload = {"status": str(overall), "checked_at": now.isoformat(), "checks": [c.as_dict() for c in checks]}
            self.stdout.write(json.dumps(payload, indent=2))
        else:
            for check in checks:
                self.stdout.write(f"{check.status.upper():4}  {check.name:11} {check.summary}")
            self.stdout.write(f"overall: {overall}")
        raise SystemExit(EXIT_CODES[overall])
