"""Look a domain up in the global certificate table (no outside service)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from certificates.services import certificate_names, certificates_for
from kcproto.names import InvalidName


class Command(BaseCommand):
    help = "Certificates naming DOMAIN (and its sub-domains), newest first, one per issuance."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("domain")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument("--exact", action="store_true", help="only the name itself (and covering wildcards)")
        parser.add_argument("--valid", action="store_true", help="only certificates valid now")
        parser.add_argument("--limit", type=int, default=100)

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        try:
            qs = certificates_for(
                options["domain"], include_subdomains=not options["exact"], valid_at=now if options["valid"] else None
            )
        except InvalidName as exc:
            raise CommandError(f"invalid domain: {exc}") from None
        certs = list(qs.prefetch_related("names", "sources")[: max(1, options["limit"])])
        rows: list[dict[str, Any]] = [
            {
                "sha256": c.sha256,
                "names": certificate_names(c),
                "issuer": c.issuer,
                "serial": c.serial,
                "not_before": c.not_before.isoformat(),
                "not_after": c.not_after.isoformat(),
                "precertificate": c.is_precertificate,
                "expired": c.is_expired(now),
                "sources": sorted({f"{s.kind}:{s.ref}" for s in c.sources.all()})[:10],
            }
            for c in certs
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("no certificates found")
        for r in rows:
            flag = " (precertificate)" if r["precertificate"] else ""
            state = "expired" if r["expired"] else "valid"
            self.stdout.write(
                f"{r['not_before'][:10]} .. {r['not_after'][:10]}  {state:<7} {r['sha256'][:16]}  "
                f"{', '.join(r['names'][:5])}{' ...' if len(r['names']) > 5 else ''}  [{r['issuer']}]{flag}"
            )
