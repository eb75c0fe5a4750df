"""The fault drill: set-up, each fault, load and soak (issue 21)."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from faultdrill.common import ALERTS_TO, BASE, DOMAIN, PYTHON, free_port, log, wait_until
from faultdrill.lab import Lab, Postgres, Redis, _count_connections, lab_start
from faultdrill.probes import claimed_now, db_rows, due_ids, make_due, pending_ids, scan_marks, scanned_since
from faultdrill.report import Row, render
from faultdrill.stack import Client, Stack, setup_team

# --- the drill --------------------------------------------------------------------------------------


class Drill:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="kc-drill-"))
        self.rows: list[Row] = []
        self.pg = Postgres(self.root)
        self.redis = Redis(self.root)
        self.lab: Lab
        self.stack: Stack
        self.client: Client
        self.figures: dict[str, Any] = {}
        self.ct_issued: list[str] = []
        self.lease = 40 if not args.quick else 10  # the claim lease (s)
        self.beat = 60 if not args.quick else 10  # beat's pass over due servers (s)
        self.claim = 600 if not args.quick else 20  # a delivery's claim (KEYCHEST_NOTIFY_CLAIM_SECONDS)
        self.status_token = secrets.token_urlsafe(24)

    # set-up ------------------------------------------------------------------------------------
    def up(self) -> None:
        log(f"drill folder {self.root}")
        self.pg.init()
        self.redis.start()
        log(f"PostgreSQL on 127.0.0.1:{self.pg.port}, Redis on 127.0.0.1:{self.redis.port} (the drill's own)")
        self.lab = lab_start(self.root, self.args.servers, self.args.slow)
        web_port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KEYCHEST_", "DATABASE_URL", "REDIS_URL", "CELERY_", "EMAIL_", "DJANGO_"))
        }
        if self.args.quick:  # the production back-off (5 s doubling to 15 min) outlasts a short drill
            env.update({"KEYCHEST_CT_BACKOFF_SECONDS": "2", "KEYCHEST_CT_BACKOFF_MAX_SECONDS": "20"})
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "keychest.settings",
                "DEBUG": "0",
                "SECRET_KEY": secrets.token_urlsafe(48),
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "SITE_URL": f"http://127.0.0.1:{web_port}",
                "SECURE_SSL_REDIRECT": "0",
                "SESSION_COOKIE_SECURE": "0",
                "CSRF_COOKIE_SECURE": "0",
                "SECURE_HSTS_SECONDS": "0",
                "DATABASE_URL": self.pg.url,
                "REDIS_URL": self.redis.url,
                "EMAIL_URL": f"smtp://127.0.0.1:{self.lab.smtp.port}",
                "EMAIL_TIMEOUT": "5",
                "KEYCHEST_ALLOW_PRIVATE_TARGETS": "1",
                "KEYCHEST_DNS_NAMESERVERS": self.lab.dns.nameserver,
                "KEYCHEST_DNS_TIMEOUT": "2",
                "KEYCHEST_CT_LOG_LIST": str(self.lab.log_list),
                "KEYCHEST_CT_INGEST": "1",
                "KEYCHEST_SCAN_LEGACY_TLS": "0",  # one connection per scan: two scans at once show as two
                "KEYCHEST_SCAN_ALTERNATE_KEY": "0",
                "KEYCHEST_SCAN_DEADLINE": "6",
                "KEYCHEST_SCAN_CONNECT_TIMEOUT": "2",
                "KEYCHEST_SCAN_BATCH": str(self.args.batch),
                "KEYCHEST_SCAN_CLAIM_LEASE": str(self.lease),
                "KEYCHEST_SCAN_DUE_SECONDS": str(self.beat),
                "KEYCHEST_WEBHOOK_TIMEOUT": "5",
                "KEYCHEST_NOTIFY_CLAIM_SECONDS": str(self.claim),
                "KEYCHEST_STATUS_TOKEN": self.status_token,
                "KEYCHEST_CACHE_PREFIX": "drill",
                # 50 clients share one key and one address here: the load phase measures the stack,
                # not the per-key and per-address limits (600 and 1,200 a minute by default).
                "KEYCHEST_API_RATE_PER_KEY": "1000000",
                "KEYCHEST_API_RATE_PER_IP": "1000000",
                "WEB_CONCURRENCY": "2",
                "STATIC_ROOT": str(self.root / "static"),
            }
        )
        self.env = env
        os.environ.update({k: v for k, v in env.items() if k != "WEB_CONCURRENCY"})
        import django

        django.setup()
        for command in (["migrate"], ["collectstatic"]):
            subprocess.run([PYTHON, "manage.py", *command, "--noinput", "-v", "0"], cwd=BASE, env=env, check=True)  # noqa: S603
        self.stack = Stack(self.root, env, web_port)
        for name in self.stack.procs:
            self.stack.start(name)
        self.stack.supervise()
        base = f"http://127.0.0.1:{web_port}"
        import requests

        if wait_until(lambda: requests.get(base + "/healthz", timeout=2).status_code < 500, 90) is None:
            raise RuntimeError("gunicorn did not answer")
        self.client = Client(base)
        self.figures["setup"] = setup_team(self.client, self.lab, self.args.interval)
        self.ids = due_ids()
        log(f"set up through the API and pages: {self.figures['setup']}")
        took = wait_until(lambda: scanned_since(dict.fromkeys(self.ids)) == len(self.ids), 300, 1)
        self.figures["first_scans_s"] = took
        log(f"first scans of {len(self.ids)} servers done in {took} s")

    def down(self) -> None:
        with contextlib.suppress(Exception):
            self.stack.stop_all()
        with contextlib.suppress(Exception):
            self.lab.stop()
        self.redis.stop()
        self.pg.stop("immediate")
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    # helpers -----------------------------------------------------------------------------------
    def most_open(self) -> int:
        """The most scans of one lab server ever in flight at once (each holds one connection)."""
        stats = getattr(self.lab.tls, "most_open", {})
        return max(stats.values(), default=0)

    def ct_issue(self, count: int) -> list[str]:
        """New certificates for the watched domain in the lab CT log: each must reach both channels once."""
        log_ = self.lab.ctlog
        names = []
        for _ in range(count):
            name = f"ct{len(self.ct_issued)}.{DOMAIN}"
            self.ct_issued.append(name)
            names.append(name)
            log_.add_issuance(log_.issue([name]))
        log_.publish()
        return names

    def deliveries_health(self) -> str:
        """What /status.json's deliveries check says now (it warns after 10 minutes of waiting)."""
        import requests

        answer = requests.get(
            self.client.base + "/status.json", headers={"Authorization": f"Bearer {self.status_token}"}, timeout=30
        )
        for check in answer.json().get("checks", []):
            if check.get("name") == "deliveries":
                return f"{check.get('status')}: {check.get('summary')}"
        return f"HTTP {answer.status_code}, no deliveries check"

    def deliveries_check(self, names: list[str], timeout: float) -> tuple[float | None, int, int, str]:
        """(seconds until every alert reached both channels, lost, doubled, notes).

        Doubled counts distinct deliveries of one alert: webhook events by their idempotency_key,
        emails by their Message-ID (a resend after a crash carries the same one). Repeats of the
        same key or Message-ID are reported apart: receivers drop them by it."""

        def arrived() -> bool:
            hooks = self.lab.webhook.subjects()
            mails = "\n".join(text for _, text in self.lab.smtp.copies(ALERTS_TO))
            return all(any(n in s for s in hooks) for n in names) and all(n in mails for n in names)

        took = wait_until(arrived, timeout, 1)
        hooks = self.lab.webhook.received_events()
        mails = self.lab.smtp.copies(ALERTS_TO)
        lost = doubled = repeats = 0
        for name in names:
            keys = [key for key, subject in hooks if name in subject]
            ids = [mid for mid, text in mails if name in text]
            lost += (not keys) + (not ids)
            doubled += max(len(set(keys)) - 1, 0) + max(len(set(ids)) - 1, 0)
            repeats += len(keys) - len(set(keys)) + len(ids) - len(set(ids))
        return took, lost, doubled, f"repeats of one key or Message-ID: {repeats}"

    def scans_recover(self, row: Row, marks: dict[int, Any], bound: float) -> None:
        took = wait_until(lambda: scanned_since(marks) == len(marks), bound + 120, 1)
        row.recovery_s = round(took, 1) if took is not None else None
        row.lost = len(marks) - scanned_since(marks)
        row.bound_s = bound

    # faults ------------------------------------------------------------------------------------
    def fault_worker_scan(self) -> Row:
        row = Row("SIGKILL of a worker", "mid scan batch", "every server of the batch scanned again within the bound")
        make_due()
        silent = {self.lab.ports[h] for h in self.lab.slow}
        holder: list[str] = []

        def in_flight() -> bool:
            holder[:] = [n for n in ("worker1", "worker2") if silent & self.stack.remote_ports(n)]
            return bool(holder)

        if wait_until(in_flight, 150, 0.2) is None:
            row.notes = "no batch in flight to kill"
            return row
        before = scan_marks(due_ids())
        self.stack.kill(holder[0])
        time.sleep(2)
        # The killed batch (and other batches still running, which finish on their own).
        ids = claimed_now()
        marks = {pk: before[pk] for pk in ids}
        time.sleep(3)
        self.stack.start(holder[0])
        # lease + one beat pass + the scan itself (the slow servers take the deadline) + queue wait.
        self.scans_recover(row, marks, self.lease + self.beat + 6 + 30)
        row.doubled = max(self.most_open() - 1, 0)
        row.notes = f"{holder[0]} killed with {len(ids)} servers claimed"
        row.ok = row.lost == 0 and row.doubled == 0 and row.recovery_s is not None and row.recovery_s <= row.bound_s
        return row

    def fault_worker_delivery(self) -> Row:
        row = Row("SIGKILL of both workers", "mid webhook delivery and mid alert email", "every alert delivered once")
        self.lab.webhook.delay = 3.0  # the receiver and the SMTP server take 3 s to answer:
        self.lab.smtp.delay = 3.0  # the kill lands while a request and a message are in flight
        hooks, mails = self.lab.webhook.started, self.lab.smtp.started
        names = self.ct_issue(self.args.alerts)
        inflight = wait_until(lambda: self.lab.webhook.started > hooks or self.lab.smtp.started > mails, 180, 0.1)
        killed = time.monotonic()
        self.stack.kill("worker1")
        self.stack.kill("worker2")
        self.lab.webhook.delay = 0.0
        self.lab.smtp.delay = 0.0
        time.sleep(5)
        self.stack.start("worker1")
        self.stack.start("worker2")
        took, row.lost, row.doubled, repeats = self.deliveries_check(names, self.claim + 600)
        row.recovery_s = round(time.monotonic() - killed, 1) if took is not None else None
        row.bound_s = self.claim + 300
        row.notes = (
            f"killed {'with a delivery in flight' if inflight is not None else 'with nothing in flight'}; "
            f"a delivery's claim runs {self.claim} s; {repeats}"
        )
        row.ok = row.lost == 0 and row.doubled == 0 and inflight is not None
        row.ok = row.ok and row.recovery_s is not None and row.recovery_s <= row.bound_s
        return row

    def fault_ct_kill(self) -> Row:
        row = Row("SIGKILL of the CT ingester", "mid chunk", "no gap, no duplicate; events exactly once")
        names = self.ct_issue(self.args.alerts)
        self.lab.ctlog.add_random(self.args.ct_entries)
        self.lab.ctlog.publish()
        size = self.lab.ctlog.published_size
        time.sleep(1.0)
        self.stack.kill("ct")
        time.sleep(3)
        killed = time.monotonic()
        self.stack.start("ct")
        took = wait_until(lambda: db_rows("SELECT max(position) FROM certificates_ctlog")[0][0] == size, 600, 1)
        row.recovery_s = round(took, 1) if took is not None else None
        row.bound_s = 600
        position, verified = db_rows("SELECT max(position), max(verified_size) FROM certificates_ctlog")[0]
        events = Counter(
            r[0] for r in db_rows("SELECT subject FROM notifications_event WHERE kind = 'certificate_issued'")
        )
        row.lost = sum(1 for n in names if not any(n in s for s in events)) + max(size - int(position or 0), 0)
        row.doubled = sum(max(sum(c for s, c in events.items() if n in s) - 1, 0) for n in names)
        _, d_lost, d_doubled, repeats = self.deliveries_check(names, 300)
        row.lost += d_lost
        row.doubled += d_doubled
        row.notes = f"log size {size}, read to {position}, verified to {verified}; restarted {time.monotonic() - killed:.0f} s ago; {repeats}"
        row.ok = row.lost == 0 and row.doubled == 0 and took is not None and verified == size
        return row

    def fault_redis(self) -> Row:
        row = Row(
            "Redis restart (data lost)",
            "with tasks queued and running",
            "no scheduled work lost: beat or the claims bring it back",
        )
        make_due()
        wait_until(lambda: len(claimed_now()) > 0, 60, 0.2)
        marks = scan_marks(pending_ids())
        names = self.ct_issue(max(2, self.args.alerts // 2))
        self.redis.stop()
        time.sleep(3)
        self.redis.start()
        self.scans_recover(row, marks, self.lease + self.beat + 60 + 30)
        _, d_lost, d_doubled, repeats = self.deliveries_check(names, 300)
        row.lost += d_lost
        row.doubled = d_doubled + max(self.most_open() - 1, 0)
        wait_until(lambda: all(self.stack.alive().values()), 30)  # the supervisor's restarts
        alive = self.stack.alive()
        row.notes = f"{len(marks)} servers due; processes alive after: {sum(alive.values())}/{len(alive)}; {repeats}"
        row.ok = row.lost == 0 and row.doubled == 0 and row.recovery_s is not None and all(alive.values())
        return row

    def fault_postgres(self) -> Row:
        row = Row(
            "PostgreSQL fast shutdown and restart",
            "during ingestion and scans",
            "every process reconnects; no half-written scan",
        )
        make_due()
        wait_until(lambda: len(claimed_now()) > 0, 60, 0.2)
        names = self.ct_issue(max(2, self.args.alerts // 2))
        self.lab.ctlog.add_random(self.args.ct_entries)
        self.lab.ctlog.publish()
        marks = scan_marks(pending_ids())
        self.pg.stop("fast")
        time.sleep(5)
        self.pg.start()
        self.scans_recover(row, marks, self.lease + self.beat + 60 + 60)
        size = self.lab.ctlog.published_size
        ct_ok = wait_until(lambda: db_rows("SELECT max(position) FROM certificates_ctlog")[0][0] == size, 300, 1)
        _, d_lost, d_doubled, repeats = self.deliveries_check(names, 300)
        half = db_rows(
            "SELECT count(*) FROM monitors_server s WHERE removed_at IS NULL AND last_scan_at IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM monitors_scanresult r WHERE r.server_id = s.id AND r.current)"
        )[0][0]
        wait_until(lambda: all(self.stack.alive().values()), 30)  # the supervisor's restarts
        alive = self.stack.alive()
        row.lost += d_lost + int(half) + (0 if ct_ok is not None else 1)
        row.doubled = d_doubled + max(self.most_open() - 1, 0)
        row.notes = f"servers scanned without a current result (half-written): {half}; processes alive: {sum(alive.values())}/{len(alive)}; {repeats}"
        row.ok = row.lost == 0 and row.doubled == 0 and row.recovery_s is not None and all(alive.values())
        return row

    def fault_smtp(self) -> Row:
        minutes = self.args.smtp_minutes
        row = Row(
            "SMTP server down", f"{minutes:g} min, during alerts", "everything delivered once it is back, nothing twice"
        )
        self.lab.smtp.down()
        names = self.ct_issue(self.args.alerts)
        time.sleep(minutes * 60)
        health = self.deliveries_health()
        self.lab.smtp.up()
        back = time.monotonic()
        took, row.lost, row.doubled, repeats = self.deliveries_check(names, 1800)
        row.recovery_s = round(time.monotonic() - back, 1) if took is not None else None
        row.bound_s = 1800
        row.notes = (
            f"status page's deliveries check at the outage's end: {health}; retries back off 1, 2, 4 … min; {repeats}"
        )
        row.ok = row.lost == 0 and row.doubled == 0 and took is not None
        return row

    def fault_ctlog(self) -> Row:
        row = Row("CT log answering 500, 429", "then short batches", "back-off, then catch-up without gap")
        faults = self.lab.ctlog.faults
        names = self.ct_issue(max(2, self.args.alerts // 2))
        self.lab.ctlog.add_random(self.args.ct_entries)
        self.lab.ctlog.publish()
        size = self.lab.ctlog.published_size
        third = self.args.ctlog_seconds / 3
        faults.status_500 = 10**9  # every request answers 500 ...
        time.sleep(third)
        faults.status_500, faults.status_429 = 0, 10**9  # ... then 429 ...
        time.sleep(third)
        faults.status_429, faults.short_batches = 0, True  # ... then short (truncated) batches
        time.sleep(third)
        faults.short_batches = False
        back = time.monotonic()
        took = wait_until(lambda: db_rows("SELECT max(position) FROM certificates_ctlog")[0][0] == size, 600, 1)
        row.recovery_s = round(time.monotonic() - back, 1) if took is not None else None
        row.bound_s = 600
        _, d_lost, d_doubled, repeats = self.deliveries_check(names, 300)
        verified = db_rows("SELECT max(verified_size) FROM certificates_ctlog")[0][0]
        row.lost = d_lost + (0 if took is not None else 1)
        row.doubled = d_doubled
        row.notes = (
            f"500s, 429s, then short batches, {third:g} s each; log size {size}, verified to {verified}; {repeats}"
        )
        row.ok = row.lost == 0 and row.doubled == 0 and took is not None and verified == size
        return row

    def fault_webhook_hang(self) -> Row:
        row = Row("webhook receiver hanging", "during delivery", "times out, retries, recorded; email unaffected")
        self.lab.webhook.hang.set()
        names = self.ct_issue(2)
        mails = wait_until(lambda: all(n in "\n".join(self.lab.smtp.to(ALERTS_TO)) for n in names), 300, 1)
        time.sleep(15)  # past the 5 s webhook timeout: attempts recorded as failures
        attempts = db_rows(
            "SELECT count(*) FROM notifications_deliveryattempt a JOIN notifications_delivery d ON d.id = a.delivery_id "
            "JOIN notifications_channel c ON c.id = d.channel_id WHERE c.kind = 'webhook' AND NOT a.ok"
        )[0][0]
        self.lab.webhook.hang.clear()
        back = time.monotonic()
        took, row.lost, row.doubled, repeats = self.deliveries_check(names, 900)
        row.recovery_s = round(time.monotonic() - back, 1) if took is not None else None
        row.bound_s = 900
        row.notes = f"email arrived during the hang: {'yes' if mails is not None else 'no'}; failed webhook attempts recorded: {attempts}; {repeats}"
        row.ok = row.lost == 0 and row.doubled == 0 and took is not None and mails is not None and int(attempts) > 0
        return row

    def fault_dns(self) -> Row:
        row = Row("DNS resolver silent", "during a scan", "findings say so; no worker hangs past its deadline")
        for host in self.lab.addresses:
            self.lab.dns.set(host, "TIMEOUT")  # the resolver never answers
        make_due()
        marks = scan_marks(pending_ids())
        # DNS is re-read every 2 h: force it for the due servers, as a resolver outage would be met.
        db_rows("UPDATE monitors_server SET dns_resolved_at = NULL WHERE id = ANY(%s) RETURNING id", (list(marks),))
        self.scans_recover(row, marks, self.lease + self.beat + 60)
        findings = db_rows(
            "SELECT count(DISTINCT server_id) FROM monitors_finding WHERE resolved_at IS NULL AND code = 'dns_failure'"
        )[0][0]
        for host, address in self.lab.addresses.items():
            self.lab.dns.set(host, [address])
        row.notes = f"servers with an open DNS finding: {findings} of {len(marks)}"
        row.ok = row.lost == 0 and row.recovery_s is not None and int(findings) == len(marks)
        return row

    FAULTS = {  # quick ones first: a drill cut short still has most rows
        "worker_scan": fault_worker_scan,
        "ct_kill": fault_ct_kill,
        "redis": fault_redis,
        "postgres": fault_postgres,
        "dns": fault_dns,
        "webhook_hang": fault_webhook_hang,
        "worker_delivery": fault_worker_delivery,
        "ctlog": fault_ctlog,
        "smtp": fault_smtp,
    }

    # load and soak -------------------------------------------------------------------------------
    def load(self, clients: int, seconds: float) -> dict[str, Any]:
        import requests

        latencies: list[float] = []
        errors = Counter[str]()
        lock = threading.Lock()
        stop = time.monotonic() + seconds
        paths = [
            "/api/v1/servers/?page_size=50",
            f"/api/v1.0/servers/expiration/s{self.args.slow}.{DOMAIN}",
            "/api/v1/findings/",
        ]

        def one(index: int) -> None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.client.key}"
            n = index
            while time.monotonic() < stop:
                path = paths[n % len(paths)]
                n += 1
                started = time.perf_counter()
                try:
                    answer = session.get(self.client.base + path, timeout=30)
                    ok = answer.status_code < 400
                    kind = "" if ok else f"HTTP {answer.status_code}"
                except requests.RequestException as error:
                    kind = type(error).__name__
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if kind:
                        errors[kind] += 1

        threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        latencies.sort()
        count = len(latencies)
        return {
            "clients": clients,
            "seconds": seconds,
            "requests": count,
            "rps": round(count / seconds, 1),
            "p50_ms": round(latencies[count // 2] * 1000, 1) if count else None,
            "p99_ms": round(latencies[min(count - 1, int(count * 0.99))] * 1000, 1) if count else None,
            "error_rate": round(sum(errors.values()) / count, 4) if count else None,
            "errors": dict(errors),
        }

    def soak(self, minutes: float) -> dict[str, Any]:
        """Continuous scanning (every server due again each minute); RSS of every process each minute."""
        samples: dict[str, list[tuple[float, int]]] = defaultdict(list)
        started = time.monotonic()
        end = started + minutes * 60
        while True:
            make_due()
            for name, kib in self.stack.rss_kib().items():
                samples[name].append(((time.monotonic() - started) / 60, kib))
            if time.monotonic() >= end:
                break
            time.sleep(min(60, max(0, end - time.monotonic())))
        slopes: dict[str, Any] = {}
        for name, points in samples.items():
            if len(points) >= 3:
                xs, ys = [p[0] for p in points], [p[1] / 1024 for p in points]
                slope = statistics.linear_regression(xs, ys).slope
                slopes[name] = {
                    "first_mib": round(ys[0], 1),
                    "last_mib": round(ys[-1], 1),
                    "slope_mib_per_min": round(slope, 3),
                    # Half the run's samples after warm-up: a leak shows there as a steady climb.
                    "slope_after_warmup": round(
                        statistics.linear_regression(xs[len(xs) // 2 :], ys[len(ys) // 2 :]).slope, 3
                    )
                    if len(xs) >= 6
                    else None,
                }
        return {"minutes": minutes, "samples": len(next(iter(samples.values()), [])), "processes": slopes}

    # run -------------------------------------------------------------------------------------------
    def run(self) -> int:
        # Count the scans of each lab server in flight at once (one connection each).
        _count_connections(self.lab_tls_class())
        try:
            self.up()
            if self.args.load_seconds:
                log(f"load: {self.args.clients} clients for {self.args.load_seconds} s")
                self.figures["load"] = self.load(self.args.clients, self.args.load_seconds)
                log(f"  {self.figures['load']}")
                self.write()
            chosen = [f for f in self.FAULTS if not self.args.only or f in self.args.only]
            for name in chosen:
                log(f"fault: {name}")
                restarts = Counter(self.stack.restarts)
                self.lab.tls.most_open = Counter(self.lab.tls.open)  # each row counts its own overlaps
                try:
                    row = self.FAULTS[name](self)
                except Exception as error:  # noqa: BLE001 - a row that could not run is a failed row
                    row = Row(name, "", "", notes=f"the drill failed: {type(error).__name__}: {error}")
                restarted = self.stack.restarts - restarts
                if restarted:
                    row.notes += f"; exited and restarted by the supervisor: {dict(restarted)}"
                self.rows.append(row)
                log(f"  {row}")
                self.write()  # after every row: a drill cut short still leaves its figures
                time.sleep(5)
            if self.args.soak_minutes:
                log(f"soak: {self.args.soak_minutes} min")
                self.figures["soak"] = self.soak(self.args.soak_minutes)
                log(f"  {self.figures['soak']}")
            self.figures["most_open"] = self.most_open()
            self.figures["overlaps"] = [list(map(str, o)) for o in getattr(self.lab.tls, "overlaps", [])]
            self.figures["settings"] = {
                "claim_lease_s": self.lease,
                "beat_s": self.beat,
                "delivery_claim_s": self.claim,
            }
            self.figures["restarts_by_supervisor"] = dict(self.stack.restarts)
        finally:
            self.down()
        print(self.write())
        log(f"wrote {self.args.output}")
        return 0 if self.rows and all(r.ok for r in self.rows) else 1

    def write(self) -> str:
        lab = getattr(self, "lab", None)
        self.figures["overlaps"] = [list(map(str, o)) for o in getattr(getattr(lab, "tls", None), "overlaps", [])]
        self.figures["settings"] = {"claim_lease_s": self.lease, "beat_s": self.beat, "delivery_claim_s": self.claim}
        table = render(self.rows, self.figures, self.args)
        if not self.args.no_write:
            Path(self.args.output).write_text(table)
        return table

    @staticmethod
    def lab_tls_class() -> Any:
        from lab.tls import Lab as TLSLab

        return TLSLab
