"""`manage.py spotcheck HOST[:PORT] [--ip IP] [--starttls PROTO] [--ca-file PEM] [--json]`."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kcproto.targets import PROTOCOLS, InvalidTarget
from monitors.spotcheck import spotcheck


class Command(BaseCommand):
    help = "Check one host[:port] now, without storing anything into any team."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("target", help="host[:port] (port 443 by default)")
        parser.add_argument("--ip", help="scan this address instead of resolving the host")
        parser.add_argument("--starttls", choices=[p for p in PROTOCOLS if p != "tls"], help="STARTTLS protocol")
        parser.add_argument("--ca-file", help="PEM file of extra trusted CA certificates")
        parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
        parser.add_argument(
            "--hsts", action="store_true", help="ask for HSTS on any TLS port (default: only on 443 and 8443)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ca_pem = ""
        if options["ca_file"]:
            try:
                with open(options["ca_file"], encoding="utf-8") as handle:
                    ca_pem = handle.read()
            except OSError as exc:
                raise CommandError(f"cannot read {options['ca_file']}: {exc}") from None
        try:
            checked = spotcheck(
                target=options["target"],
                ip=options["ip"],
                protocol=options["starttls"],
                ca_pem=ca_pem,
                check_hsts=True if options["hsts"] else None,
            )
        except (InvalidTarget, ValueError) as exc:
            raise CommandError(str(exc)) from None
        result = checked.as_dict()
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
            return
        self.stdout.write(f"{result['host']}:{result['port']} ({result['protocol']})")
        for address in result["addresses"]:
            self.stdout.write(f"  {address['ip']}: {address['tls_version'] or address['error_code']}")
            hsts = address.get("hsts")
            if hsts:
                self.stdout.write(f"    HSTS: {hsts['header'] if hsts['present'] else hsts['error'] or 'not sent'}")
            for cert in address["chain"][:1]:
                self.stdout.write(
                    f"    {cert['subject']}  valid until {cert['not_after']}  sha256 {cert['sha256'][:16]}"
                )
        if not result["findings"]:
            self.stdout.write("  no findings")
        for finding in result["findings"]:
            where = f" [{finding['address']}]" if finding["address"] else ""
            self.stdout.write(f"  {finding['severity']:8} {finding['code']}{where}: {finding['message']}")
