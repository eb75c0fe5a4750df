#!/usr/bin/env python
"""Weekly reports end to end: the project's path against a bare loop, to a local SMTP server.

    python bench/weekly_reports.py              # 1,000 users / 200 teams / 20 servers each
    python bench/weekly_reports.py --full       # 10,000 users / 2,000 teams / 20 servers each
    DATABASE_URL=postgres://…/scratch python bench/weekly_reports.py   # PostgreSQL (it is flushed!)

The project's path is `weekly_reports_send_due(force=True)`: pick due users, claim each report
(unique row), read the report data for a batch of users in a constant number of queries, render
subject + text + HTML, send with List-Unsubscribe headers over one SMTP session, mark sent.
The bare loop renders one template per user from the same, precomputed data and sends it with
smtplib over one session. The SMTP server (aiosmtpd) runs in its own process. Prints JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def smtp_server(port_queue: multiprocessing.Queue, counter: multiprocessing.Value) -> None:  # type: ignore[type-arg]
    import asyncio
    import logging

    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # a log line per SMTP command is the bottleneck

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    class Ephemeral(Controller):
        def _trigger_server(self) -> None:
            self.port = self.server.sockets[0].getsockname()[1]
            super()._trigger_server()

    controller = Ephemeral(Handler(), hostname="127.0.0.1", port=0)
    controller.start()
    port_queue.put(controller.port)
    asyncio.run(asyncio.sleep(10**6))


def _accounts(*, users: int, teams: int, now: datetime) -> tuple[list, list]:
    """Teams, verified users (the first of each team its owner) and a watched domain per team."""
    from allauth.account.models import EmailAddress

    from keychest.accounts.models import Membership, Role, Team, User
    from monitors.models import WatchedDomain

    old = now - timedelta(days=365)
    team_rows = Team.objects.bulk_create([Team(name=f"Team {i:05d}") for i in range(teams)], batch_size=2000)
    user_rows = User.objects.bulk_create(
        [User(email=f"user{i:06d}@bench.example", password="!", date_joined=old) for i in range(users)],
        batch_size=2000,
    )
    EmailAddress.objects.bulk_create(
        [EmailAddress(user=u, email=u.email, verified=True, primary=True) for u in user_rows], batch_size=2000
    )
    Membership.objects.bulk_create(
        [
            Membership(team=team_rows[i % teams], user=u, role=Role.OWNER if i < teams else Role.MEMBER)
            for i, u in enumerate(user_rows)
        ],
        batch_size=2000,
    )
    WatchedDomain.objects.bulk_create(
        [WatchedDomain(team=t, domain=f"t{i}.bench.example") for i, t in enumerate(team_rows)], batch_size=2000
    )
    return team_rows, user_rows


def _scan_rows(server_rows: list, now: datetime) -> tuple[list, list]:
    """One or two current results per server, expiries spread; a finding on every tenth server."""
    from monitors.models import Finding, ScanResult

    results, findings = [], []
    for n, server in enumerate(server_rows):
        # Spread expiries: a few expired, some within 7 and 28 days, most later.
        left = timedelta(days=(n * 7) % 95 - 3, hours=n % 24)
        sha = hashlib.sha256(f"leaf{n}".encode()).hexdigest()
        for address in ("192.0.2.1", "2001:db8::1")[: 1 + n % 2]:
            results.append(
                ScanResult(
                    team_id=server.team_id,
                    server=server,
                    address=address,
                    state_digest=sha,
                    leaf_sha256=sha,
                    subject=f"CN={server.host}",
                    issuer="CN=R11,O=Let's Encrypt",
                    names=[server.host],
                    not_before=now + left - timedelta(days=90),
                    not_after=now + left,
                    trusted=True,
                    first_seen=now - timedelta(days=30),
                    last_seen=now,
                )
            )
        if n % 10 == 0:
            findings.append(
                Finding(
                    team_id=server.team_id,
                    server=server,
                    code="ips_disagree",
                    severity="warning",
                    message="Addresses serve different certificates",
                    first_seen=now - timedelta(days=2),
                    last_seen=now,
                )
            )
    return results, findings


def _issuance_events(team_rows: list, now: datetime) -> None:
    """Two CT issuances per team this week."""
    from notifications.models import Event, EventKind

    Event.objects.bulk_create(
        [
            Event(
                team=t,
                kind=EventKind.CERTIFICATE_ISSUED,
                subject=f"new{k}.t{i}.bench.example",
                dedup_key=f"ct:{i}:{k}",
                payload={"issuer": "Let's Encrypt R11", "not_after": (now + timedelta(days=90)).isoformat()},
                occurred_at=now - timedelta(days=k + 1),
                dispatched_at=now,
            )
            for i, t in enumerate(team_rows)
            for k in range(2)
        ],
        batch_size=2000,
    )


def build_data(*, users: int, teams: int, servers_per_team: int, now: datetime) -> dict[str, int]:
    from monitors.models import Finding, ScanResult, Server

    team_rows, _ = _accounts(users=users, teams=teams, now=now)
    server_rows = Server.objects.bulk_create(
        [
            Server(team=t, host=f"s{j}.t{i}.bench.example")
            for i, t in enumerate(team_rows)
            for j in range(servers_per_team)
        ],
        batch_size=2000,
    )
    results, findings = _scan_rows(server_rows, now)
    ScanResult.objects.bulk_create(results, batch_size=2000)
    Finding.objects.bulk_create(findings, batch_size=2000)
    _issuance_events(team_rows, now)
    return {"users": users, "teams": teams, "servers": len(server_rows), "scan_results": len(results)}


def _sweep(now: datetime, shard: tuple[int, int]) -> dict[str, int]:
    from django.db import connections

    from notifications.reports import weekly_reports_send_due

    connections.close_all()  # a forked child must not share the parent's database socket
    return weekly_reports_send_due(now=now, force=True, shard=shard).as_dict()


def queries_for_one_report(email: str, now: datetime) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from notifications.reports import weekly_reports_send_due

    with CaptureQueriesContext(connection) as ctx:
        result = weekly_reports_send_due(now=now, force=True, email=email)
    assert result.sent == 1, result.as_dict()
    return len(ctx)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="10,000 users / 2,000 teams / 20 servers each")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--teams", type=int, default=200)
    parser.add_argument("--servers-per-team", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, default=1, help="run the path as N concurrent sweeps (like N Celery workers)"
    )
    args = parser.parse_args()
    if args.full:
        args.users, args.teams, args.servers_per_team = 10_000, 2_000, 20
    return args


def _django() -> None:
    tmp = tempfile.mkdtemp(prefix="kc-bench-")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp}/bench.sqlite3")
    os.environ["DJANGO_SETTINGS_MODULE"] = "keychest.settings_test"
    os.environ.pop("REDIS_URL", None)  # rate limits and the broker are not part of this path
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)


def _start_smtp() -> tuple[multiprocessing.Process, int, Any]:
    """The counting SMTP server in its own process; Django's mail settings point at it."""
    from django.conf import settings

    port_queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    counter = multiprocessing.Value("i", 0)
    server = multiprocessing.Process(target=smtp_server, args=(port_queue, counter), daemon=True)
    server.start()
    port = port_queue.get(timeout=30)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    return server, port, counter


def _run_path(now: datetime, workers: int) -> int:
    """The project's path; the number of reports it sent."""
    from django.db import connection

    from notifications.reports import weekly_reports_send_due

    if workers > 1:
        # Concurrent sweeps, one shard each (as KEYCHEST_WEEKLY_REPORT_SHARDS tasks on N workers).
        connection.close()
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.starmap(_sweep, [(now, (i, workers)) for i in range(workers)])
        return sum(p["sent"] + p["nudged"] for p in parts)
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        result = weekly_reports_send_due(now=now, force=True)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats(os.environ["BENCH_PROFILE"]).print_stats(45)
    else:
        result = weekly_reports_send_due(now=now, force=True)
    return result.sent + result.nudged


def _grow_team(team_id: int, now: datetime) -> None:
    """The probe's team grows from 20 to 200 servers, each with a current result."""
    from monitors.models import ScanResult, Server

    grown = Server.objects.bulk_create(
        [Server(team_id=team_id, host=f"extra{j}.bench.example") for j in range(180)], batch_size=1000
    )
    ScanResult.objects.bulk_create(
        [
            ScanResult(
                team_id=team_id,
                server=s,
                address="192.0.2.9",
                state_digest=str(j),
                leaf_sha256=hashlib.sha256(f"x{j}".encode()).hexdigest(),
                names=[s.host],
                not_before=now - timedelta(days=85),
                not_after=now + timedelta(days=5),
                first_seen=now,
                last_seen=now,
            )
            for j, s in enumerate(grown)
        ],
        batch_size=1000,
    )


def _query_counts(now: datetime) -> dict[str, float]:
    """Queries for one report (a 20-server team, then the same team at 200) and per report in a sweep."""
    from django.db import connection

    from keychest.accounts.models import Membership, User
    from notifications.models import ReportSend
    from notifications.reports import weekly_reports_send_due

    ReportSend.objects.all().delete()
    probe = User.objects.order_by("id").first()
    assert probe is not None
    queries_small = queries_for_one_report(probe.email, now)
    team_id = Membership.objects.filter(user=probe).values_list("team_id", flat=True).first()
    assert team_id is not None
    _grow_team(team_id, now)
    ReportSend.objects.all().delete()
    queries_large = queries_for_one_report(probe.email, now)
    ReportSend.objects.all().delete()
    executed = [0]

    def count(execute, sql, params, many, context):
        executed[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        sweep = weekly_reports_send_due(now=now, force=True)
    return {
        "team_with_20_servers": queries_small,
        "team_with_200_servers": queries_large,
        "per_report_in_sweep": executed[0] / max(1, sweep.sent + sweep.nudged),
    }


def _bare_contexts(now: datetime) -> list[tuple[Any, dict[str, Any]]]:
    """Every user's report context, from the same report data as the path, computed up front."""
    from keychest.accounts.models import Membership, User
    from notifications.report_data import teams_report_data
    from notifications.reports import report_context

    users = list(User.objects.order_by("id"))
    memberships: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for user_id, tid, name in Membership.objects.values_list("user_id", "team_id", "team__name"):
        memberships.setdefault(user_id, []).append(tid)
        names[tid] = name
    data = teams_report_data(sorted(names), names, now)
    return [
        (u, report_context(user=u, teams=[data[t] for t in memberships.get(u.pk, [])], now=now, week=now.date()))
        for u in users
    ]


def _run_bare(contexts: list[tuple[Any, dict[str, Any]]], port: int) -> None:
    """The whole plain-text report, team sections included, rendered per user from the data
    (the path renders each team section once per (team, zone) and reuses it; the bare loop not),
    sent with smtplib over one session."""
    import smtplib
    from email.message import EmailMessage

    from django.conf import settings
    from django.template import engines
    from django.template.loader import get_template

    source = Path(get_template("emails/weekly_report/body.txt").origin.name).read_text()
    template = engines["django"].from_string(
        source.replace("{{ team.text }}", '{% include "emails/weekly_report/team.txt" %}')
    )
    smtp = smtplib.SMTP("127.0.0.1", port)
    for user, context in contexts:
        message = EmailMessage()
        message["Subject"] = "Weekly report"
        message["From"] = settings.DEFAULT_FROM_EMAIL
        message["To"] = user.email
        message.set_content(template.render(context))
        smtp.send_message(message)
    smtp.quit()


def _timed(counter: Any, work: Callable[[], object]) -> tuple[object, float, int]:
    """Run work; its result, its seconds and the messages the SMTP server received meanwhile."""
    before = counter.value
    started = time.monotonic()
    result = work()
    seconds = time.monotonic() - started
    time.sleep(0.5)
    return result, seconds, counter.value - before


def main() -> None:
    args = _arguments()
    _django()
    from django.db import connection

    server, port, counter = _start_smtp()
    now = datetime(2026, 3, 23, 9, 0, tzinfo=UTC)
    started = time.monotonic()
    sizes = build_data(users=args.users, teams=args.teams, servers_per_team=args.servers_per_team, now=now)
    if connection.vendor == "postgresql":
        # Freshly bulk-loaded tables have no statistics yet; autovacuum would gather them within
        # a minute in production. Without them the planner loops over every server per query.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    setup_seconds = time.monotonic() - started

    path_reports, path_seconds, path_received = _timed(counter, lambda: _run_path(now, args.workers))
    queries = _query_counts(now)
    contexts = _bare_contexts(now)
    _, bare_seconds, bare_received = _timed(counter, lambda: _run_bare(contexts, port))

    assert isinstance(path_reports, int)
    path_rate = path_reports / path_seconds
    bare_rate = len(contexts) / bare_seconds
    print(
        json.dumps(
            {
                "benchmark": "weekly_reports",
                "database": connection.vendor,
                **sizes,
                "setup_seconds": round(setup_seconds, 1),
                "path": {
                    "workers": args.workers,
                    "reports": path_reports,
                    "received_by_smtp": path_received,
                    "seconds": round(path_seconds, 2),
                    "reports_per_second": round(path_rate, 1),
                    "queries_per_report_in_sweep": round(queries["per_report_in_sweep"], 2),
                },
                "bare": {
                    "reports": len(contexts),
                    "received_by_smtp": bare_received,
                    "seconds": round(bare_seconds, 2),
                    "reports_per_second": round(bare_rate, 1),
                },
                "ratio_path_to_bare": round(path_rate / bare_rate, 3),
                "queries_for_one_report": {
                    "team_with_20_servers": queries["team_with_20_servers"],
                    "team_with_200_servers": queries["team_with_200_servers"],
                },
                "target_reports_per_second": 200,
            },
            indent=2,
        )
    )
    server.terminate()


if __name__ == "__main__":
    main()
