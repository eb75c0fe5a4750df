"""`python manage.py send_weekly_reports [--now] [--user EMAIL] [--dry-run]`."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from notifications.reports import weekly_reports_send_due


class Command(BaseCommand):
    help = "Send the weekly reports that are due (once per user per week; safe to run any time)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--now", action="store_true", help="send this week's reports regardless of the hour (still once per week)"
        )
        parser.add_argument("--user", metavar="EMAIL", help="only this user")
        parser.add_argument("--dry-run", action="store_true", help="print what would be sent, send nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        result = weekly_reports_send_due(
            force=options["now"],
            email=options["user"],
            dry_run=options["dry_run"],
            out=(lambda line: self.stdout.write(line)) if options["dry_run"] else None,
        )
        self.stdout.write(json.dumps(result.as_dict(), sort_keys=True))
