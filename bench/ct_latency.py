"""Benchmark: from a CT log publishing a tree head to the watching team's event and its delivery.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kc_ct REDIS_URL=redis://127.0.0.1:6379/5 \\
        flock /tmp/kc-bench.lock .venv/bin/python bench/ct_latency.py            # make run's layout
    ... bench/ct_latency.py --layout compose                   # docker-compose.yml's commands
    ... bench/ct_latency.py --logs 100                          # 100 logs in the list

What runs, all on this machine:
- the lab CT logs (`lab/ctlog`), in a process of their own: half static-ct-api (a new checkpoint
  every second, as Sunlight logs publish), half RFC 6962 (a new tree head every 2-5 s), every log
  logging background issuances all the time (`--background` entries per second in all);
- the stack as deployed: `scripts/run_all.py` (`make run`: web, worker, beat and the CT follower)
  or the four application services of `docker-compose.yml` run as local processes with their own
  commands (gunicorn, `celery worker --concurrency 4`, beat, `ct_ingest --follow`), on a database
  of its own (created and dropped here) and REDIS_URL (its Celery queue is purged first);
- a team watching `latency.example`, with a webhook channel (a local receiver) and an email channel
  (an aiosmtpd sink), both without a grouping window (a window of N seconds, a channel's own
  choice, adds up to N seconds to the delivery).

Then `--certs` certificates for watched names are logged, one every 0.5-2.5 s in a random log, and
the benchmark times, for each, from the publication of the first tree head that includes it to
the event (the row as the database shows it, polled every 20 ms) and to the webhook POST and the
email arriving. Prints one JSON document: p50/p95/max of each, the follower's CPU, the load.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOMAIN = "latency.example"
EMAIL = "owner@latency.example"


# --- the lab logs (their own process) --------------------------------------------------------
def _serve_logs(count: int, background: float, list_path: str, commands: mp.Queue, published: mp.Queue) -> None:
    """Child process: `count` lab logs publishing on their own cadence, with background issuances;
    logs a watched certificate on request and reports when the head that includes it is out."""
    from lab.ctlog.certgen import random_names
    from lab.ctlog.server import RFC6962, STATIC, LocalCTLog, write_log_list

    rng = random.Random(7)
    logs = [LocalCTLog(api=STATIC if i % 2 == 0 else RFC6962, seed=100 + i).start() for i in range(count)]
    periods = [1.0 if log.api == STATIC else rng.uniform(2.0, 5.0) for log in logs]
    for log in logs:
        log.add_random(20)
    # Background issuances made before the clock starts: issuing costs more than logging.
    pool = [logs[i % count].issue(random_names(rng)) for i in range(int(background * 120) + 50)]
    write_log_list(list_path, logs)
    published.put(("ready", 0, 0.0, ""))
    waiting: dict[int, list[str]] = {i: [] for i in range(count)}
    next_publish = [time.time() + rng.uniform(0, p) for p in periods]
    next_background = time.time()
    while True:
        now = time.time()
        while not commands.empty():
            command = commands.get()
            if command is None:
                for log in logs:
                    log.stop()
                return
            i = rng.randrange(count)
            logs[i].add_issuance(logs[i].issue([command]), certificate=rng.random() < 0.5)
            waiting[i].append(command)
        while background and next_background <= now and pool:
            log = rng.choice(logs)
            log.add_issuance(pool.pop(), certificate=rng.random() < 0.5)
            next_background += 1.5 / background  # about 1.5 entries per issuance
        for i, log in enumerate(logs):
            if next_publish[i] <= now:
                log.publish()
                at = time.time()
                for name in waiting[i]:
                    published.put(("published", log.published_size, at, name))
                waiting[i] = []
                next_publish[i] += periods[i]
        time.sleep(0.005)


# --- the receivers -------------------------------------------------------------------------
class Arrivals:
    """When each watched name first arrived, per path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at: dict[str, dict[str, float]] = {"webhook": {}, "email": {}}

    def seen(self, path: str, text: str) -> None:
        now = time.time()
        with self.lock:
            for name in set(re.findall(r"w\d+\." + re.escape(DOMAIN), text)):
                self.at[path].setdefault(name, now)


def _webhook(arrivals: Arrivals) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrivals.seen("webhook", body.decode("utf-8", "replace"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _smtp(arrivals: Arrivals) -> Any:
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            import email
            import email.policy

            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            body = message.get_body(preferencelist=("plain",))
            arrivals.seen("email", body.get_content() if body is not None else "")  # type: ignore[union-attr]
            return "250 OK"

    class Ephemeral(Controller):
        def _trigger_server(self) -> None:
            self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            super()._trigger_server()

    controller = Ephemeral(Handler(), hostname="127.0.0.1", port=0)
    controller.start()
    return controller


# --- the stack ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _compose_commands(port: int) -> dict[str, list[str]]:
    """The application services' own commands from docker-compose.yml, run here (not in Docker)."""
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    commands = {}
    for name in ("web", "worker", "beat", "ct"):
        command = [str(part) for part in services[name]["command"]]
        command = [f"127.0.0.1:{port}" if part == "0.0.0.0:8000" else part for part in command]
        if command[0] in ("gunicorn", "celery"):
            command = [sys.executable, "-m", *command]
        elif command[0] == "python":
            command = [sys.executable, *command[1:]]
        commands[name] = command
    return commands


def _start_stack(layout: str, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    log = open(Path(env["KEYCHEST_VAR_DIR"]) / "stack.log", "wb")  # noqa: SIM115 - lives as long as the stack
    if layout == "make-run":
        return [subprocess.Popen([sys.executable, "scripts/run_all.py"], cwd=ROOT, env=env, stdout=log, stderr=log)]
    port = int(env["KEYCHEST_RUN_ADDRESS"].rsplit(":", 1)[1])
    return [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        for command in _compose_commands(port).values()
    ]


def _stop_stack(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()


def _follower_pid(roots: list[int]) -> int | None:
    """The `ct_ingest --follow` process among the stack's processes and their children."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    for pid in parent:
        ancestor = pid
        while ancestor > 1 and ancestor not in roots:
            ancestor = parent.get(ancestor, 1)
        if ancestor in roots:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"ct_ingest" in cmdline and b"--follow" in cmdline:
                return pid
    return None


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the run ------------------------------------------------------------------------------
def _tenant(webhook_url: str) -> None:
    from allauth.account.models import EmailAddress

    from keychest.accounts.models import User
    from keychest.accounts.services import personal_team_ensure
    from monitors.domains import domain_watch
    from notifications.models import ChannelKind
    from notifications.services import channel_create

    user = User.objects.create_user(email=EMAIL, password="bench-latency-password")
    EmailAddress.objects.create(user=user, email=EMAIL, verified=True, primary=True)
    team = personal_team_ensure(user=user)
    domain_watch(team=team, domain=DOMAIN)
    for kind, url in ((ChannelKind.WEBHOOK, webhook_url), (ChannelKind.EMAIL, "")):
        channel_create(team=team, kind=kind, name=str(kind), url=url, rate_limit_per_hour=100000, grouping_seconds=0)


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what} (see the stack log)")
        time.sleep(0.2)


def _events_seen(seen: dict[str, float], stop: threading.Event) -> None:
    """Poll the database for the events, as a page or the API would see them."""
    from django.db import connection

    from notifications.models import Event

    while not stop.is_set():
        for subject in Event.objects.filter(kind="certificate_issued").values_list("subject", flat=True):
            seen.setdefault(subject, time.time())
        time.sleep(0.02)
    connection.close()


def _stats(latencies: list[float]) -> dict[str, float | int]:
    if not latencies:
        return {"count": 0}
    ordered = sorted(latencies)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]  # nearest rank
    return {
        "count": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
    }


def _publish_watched(args: argparse.Namespace, commands: mp.Queue, published: mp.Queue) -> dict[str, float]:
    """Log the watched certificates one by one; returns when each one's tree head came out."""
    heads: dict[str, float] = {}
    rng = random.Random(11)
    for i in range(args.certs):
        commands.put(f"w{i}.{DOMAIN}")
        time.sleep(rng.uniform(0.5, 2.5))
    deadline = time.monotonic() + 30
    while len(heads) < args.certs and time.monotonic() < deadline:
        kind, _size, at, name = published.get(timeout=30)
        if kind == "published":
            heads[name] = at
    return heads


def _stack_env(args: argparse.Namespace, db_url: str, list_path: str, smtp_port: int, var: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "KEYCHEST_CT_INGEST": "1",
        "KEYCHEST_CT_LOG_LIST": list_path,
        "KEYCHEST_ALLOW_PRIVATE_TARGETS": "1",  # the lab logs, the webhook receiver: 127.0.0.1
        "KEYCHEST_RUN_ADDRESS": f"127.0.0.1:{_free_port()}",
        "KEYCHEST_CACHE_PREFIX": f"kc-latency-{os.getpid()}",
        "KEYCHEST_VAR_DIR": var,
        "DJANGO_SETTINGS_MODULE": "keychest.settings",
    }
    if args.layout == "make-run":
        env["DEBUG"] = "1"  # as the Makefile sets it
    else:
        env.update(
            DEBUG="0",
            SECRET_KEY="bench-latency-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SECURE_SSL_REDIRECT="0",
        )
    return env


def run(args: argparse.Namespace) -> dict[str, Any]:
    var = tempfile.mkdtemp(prefix="kc-latency-")
    list_path = str(Path(var) / "log_list.json")
    ctx = mp.get_context("spawn")
    commands, published = ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=_serve_logs, args=(args.logs, args.background, list_path, commands, published))
    server.start()
    assert published.get(timeout=600)[0] == "ready"

    import django

    django.setup()
    from django.db import connection

    from certificates.models import CTLog
    from keychest.celery import app

    connection.settings_dict["TEST"] = {
        **connection.settings_dict.get("TEST", {}),
        "NAME": f"{connection.settings_dict['NAME']}_latency",
    }
    db_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    db = connection.settings_dict
    db_url = f"postgres://{db['USER']}{':' + db['PASSWORD'] if db.get('PASSWORD') else ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db_name}"
    arrivals = Arrivals()
    webhook, smtp = _webhook(arrivals), _smtp(arrivals)
    procs: list[subprocess.Popen[bytes]] = []
    stop_polling = threading.Event()
    try:
        _tenant(f"http://127.0.0.1:{webhook.server_address[1]}/hook")
        app.control.purge()  # stale messages of earlier runs on this Redis database
        procs = _start_stack(args.layout, _stack_env(args, db_url, list_path, smtp.port, var))
        # Every log followed (leased, read) before the clock starts.
        _wait(
            lambda: (
                CTLog.objects.count() == args.logs
                and not CTLog.objects.filter(lease_holder="").exists()
                and not CTLog.objects.filter(position=None).exists()
            ),
            180,
            "the follower to hold and read every log",
        )
        time.sleep(args.warmup)
        follower = _follower_pid([p.pid for p in procs])
        cpu0, t0 = (_cpu_seconds(follower) if follower else 0.0), time.monotonic()
        seen: dict[str, float] = {}
        poller = threading.Thread(target=_events_seen, args=(seen, stop_polling), daemon=True)
        poller.start()
        heads = _publish_watched(args, commands, published)
        _wait(
            lambda: len(seen) >= len(heads) and all(len(a) >= len(heads) for a in arrivals.at.values()),
            args.settle,
            "every event and delivery",
        )
        follower_cpu = ((_cpu_seconds(follower) - cpu0) / (time.monotonic() - t0)) if follower else None
        result = _result(args, heads, seen, arrivals, follower_cpu)
    finally:
        stop_polling.set()
        _stop_stack(procs)
        commands.put(None)
        server.join(timeout=30)
        smtp.stop()
        webhook.shutdown()
        connection.creation.destroy_test_db(db_name, verbosity=0)
    return result


def _result(
    args: argparse.Namespace,
    heads: dict[str, float],
    seen: dict[str, float],
    arrivals: Arrivals,
    follower_cpu: float | None,
) -> dict[str, Any]:
    def latencies(times: dict[str, float]) -> list[float]:
        return [times[name] - at for name, at in heads.items() if name in times]

    return {
        "benchmark": "ct_latency",
        "layout": args.layout,
        "logs": args.logs,
        "background_entries_per_s": args.background,
        "certificates": args.certs,
        "head_to_event_s": _stats(latencies(seen)),
        "head_to_webhook_s": _stats(latencies(arrivals.at["webhook"])),
        "head_to_email_s": _stats(latencies(arrivals.at["email"])),
        "missing": {
            "event": sorted(set(heads) - set(seen)),
            "webhook": sorted(set(heads) - set(arrivals.at["webhook"])),
            "email": sorted(set(heads) - set(arrivals.at["email"])),
        },
        "follower_cpu_share_of_one_core": None if follower_cpu is None else round(follower_cpu, 3),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "cpu_count": os.cpu_count(),
        "targets": {"head_to_event_p95_s": 5, "head_to_delivery_p95_s": 10},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=["make-run", "compose"], default="make-run")
    parser.add_argument("--logs", type=int, default=2, help="lab logs in the list (half static-ct-api)")
    parser.add_argument("--certs", type=int, default=40, help="certificates for watched names")
    parser.add_argument("--background", type=float, default=60.0, help="background entries per second, all logs")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of following before the clock starts")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait for the last deliveries")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keychest.settings")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", "bench-latency-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
    if not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("needs DATABASE_URL (PostgreSQL) and REDIS_URL: the stack's processes share them")
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
