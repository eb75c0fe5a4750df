"""`manage.py scan [--team TEAM] [--server ID] [--all] [--sync]`: scan now."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils import timezone

from keychest.accounts.models import Team
from monitors.models import Server
from monitors.scanning import scan_server_ids
from monitors.tasks import scan_batch


class Command(BaseCommand):
    help = "Scan watched servers now: queue them for the workers, or with --sync scan in-process and wait."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", help="team UUID or exact name")
        parser.add_argument("--server", action="append", default=[], help="server UUID or id (repeatable)")
        parser.add_argument("--all", action="store_true", help="every watched server (not only due ones)")
        parser.add_argument("--sync", action="store_true", help="scan in this process and print a summary")
        parser.add_argument("--json", action="store_true", help="with --sync, print the summary as JSON")

    def _servers(self, options: dict[str, Any]) -> list[int]:
        qs = Server.objects.filter(removed_at=None)
        if options["team"]:
            team_filter = Q(name=options["team"])
            with contextlib.suppress(ValueError):
                team_filter |= Q(uuid=uuid.UUID(options["team"]))
            team = Team.objects.filter(team_filter).first()
            if team is None:
                raise CommandError(f"no team {options['team']!r}")
            qs = qs.filter(team=team)
        if options["server"]:
            wanted = Q(pk__in=[])
            for item in options["server"]:
                if item.isdigit():
                    wanted |= Q(pk=int(item))
                else:
                    try:
                        wanted |= Q(uuid=uuid.UUID(item))
                    except ValueError:
                        raise CommandError(f"{item!r} is neither a server id nor a UUID") from None
            qs = qs.filter(wanted)
        elif not options["all"] and not options["team"]:
            qs = qs.filter(paused=False, next_scan_at__lte=timezone.now())
        if not options["server"]:
            qs = qs.filter(paused=False)
        return list(qs.order_by("pk").values_list("pk", flat=True))

    def handle(self, *args: Any, **options: Any) -> None:
        ids = self._servers(options)
        if not options["sync"]:
            batch = settings.KEYCHEST_SCAN_BATCH
            for start in range(0, len(ids), batch):
                scan_batch.delay(ids[start : start + batch])
            self.stdout.write(f"queued {len(ids)} servers")
            return
        total: dict[str, Any] = {"servers": 0, "addresses": 0, "findings": {}, "seconds": 0.0}
        batch = settings.KEYCHEST_SCAN_BATCH * 5
        for start in range(0, len(ids), batch):
            summary = scan_server_ids(ids[start : start + batch], force_dns=True)
            total["servers"] += summary.servers
            total["addresses"] += summary.addresses
            total["seconds"] += summary.seconds
            for code, count in summary.findings.items():
                total["findings"][code] = total["findings"].get(code, 0) + count
        total["seconds"] = round(total["seconds"], 3)
        total["findings"] = dict(sorted(total["findings"].items()))
        if options["json"]:
            self.stdout.write(json.dumps(total))
            return
        self.stdout.write(f"servers {total['servers']}, addresses {total['addresses']}, {total['seconds']} s")
        for code, count in total["findings"].items():
            self.stdout.write(f"  {code}: {count}")
        if not total["findings"]:
            self.stdout.write("  no findings")
