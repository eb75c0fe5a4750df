"""`manage.py rdap_check [DOMAIN ...] [--due] [--sync-watches] [--json]`: domain registration expiry over RDAP, now."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kcproto.names import InvalidName
from monitors import rdap
from monitors.registrations import (
    CheckRun,
    RdapConfig,
    registration_check_now,
    registrations_check_due,
    registrations_sync,
)


class Command(BaseCommand):
    help = (
        "Check domain registrations over RDAP: the registered domain of each DOMAIN given (whatever its "
        "schedule), or with --due one scheduled run (after syncing the watched domains)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("domains", nargs="*", metavar="DOMAIN", help="a host or domain name (repeatable)")
        parser.add_argument("--due", action="store_true", help="check the registrations that are due, as beat does")
        parser.add_argument("--json", action="store_true", help="print the results as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["domains"] and not options["due"]:
            raise CommandError("give a DOMAIN or --due")
        config = RdapConfig.from_settings()
        runs: list[CheckRun] = []
        try:
            if options["due"]:
                sync = registrations_sync()
                if not options["json"]:
                    self.stdout.write(
                        f"synced: {sync.registrations_created} new registered domains, "
                        f"{sync.watches_added} watches added, {sync.watches_removed} removed"
                    )
                runs.append(registrations_check_due(config=config))
            for name in options["domains"]:
                try:
                    runs.append(registration_check_now(name=name, config=config))
                except InvalidName as error:
                    raise CommandError(str(error)) from None
        except rdap.BootstrapError as error:
            raise CommandError(str(error)) from None
        domains = [d for run in runs for d in run.domains]
        if options["json"]:
            self.stdout.write(json.dumps({"domains": domains}, indent=2))
            return
        if not domains:
            self.stdout.write("nothing checked")
        for d in domains:
            if d["status"] == "ok" and d["expires_at"]:
                line = f"{d['domain']}: expires {d['expires_at']} ({d['days_left']} days)"
                if d["registrar"]:
                    line += f", registrar {d['registrar']}"
            else:
                line = f"{d['domain']}: {d['status']}"
            if d["last_error"]:
                line += f" — {d['last_error']}"
            self.stdout.write(line)
