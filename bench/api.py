#!/usr/bin/env python
"""The v1.0 API under gunicorn against PostgreSQL, beside bare Django views returning the same JSON.

    flock /tmp/kc-bench.lock .venv/bin/python bench/api.py            # 8 s per path, 4 clients
    flock /tmp/kc-bench.lock .venv/bin/python bench/api.py --seconds 20 --clients 8

Paths measured in one run, each against its bare twin behind the same middleware stack:
- `GET /api/v1.0/servers/expiration/{domain}` (key auth, throttling counters leased from Redis,
  the team's scan results of a server with `--ips` addresses) vs a view returning that JSON;
- `POST /api/v1.0/servers/add` (a new server per request) vs a view answering the same shape;
- `POST /api/v1.0/servers/add` of the server already watched (what deploy hooks mostly send).
Second references: the expiration call beside the bare view plus one Redis command and one SQL
statement (`bare_with_io`, the floor for any answer that touches both servers), and enrolment
beside the bare view plus the same durable INSERT in plain SQL (`bare_with_insert`, the write
any enrolment needs).
The database (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/kc_api_bench) is
flushed first. Queries per request come from an X-Queries header every response carries.
Prints JSON: requests/s of both, their ratio, latency percentiles, queries per request, and the
server-side CPU per request of gunicorn, this database's PostgreSQL backends and Redis.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/kc_api_bench"


def configure(database_url: str, redis_url: str) -> dict[str, str]:
    env = {
        "DEBUG": "0",
        "SECRET_KEY": "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "KEYCHEST_CACHE_PREFIX": "keychest-bench-api",
        "KEYCHEST_API_RATE_PER_KEY": str(10**9),
        "KEYCHEST_API_RATE_PER_IP": str(10**9),
        "DJANGO_SETTINGS_MODULE": "api_bench_settings",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": f"{BENCH}{os.pathsep}{ROOT}",
    }
    os.environ.update(env)
    sys.path[:0] = [str(BENCH), str(ROOT)]
    return env


def ensure_database(database_url: str) -> None:
    import psycopg2

    name = database_url.rsplit("/", 1)[1]
    admin = psycopg2.connect(database_url.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def build_data(*, ips: int) -> dict[str, Any]:
    """One user, team, key and a watched server whose `ips` addresses were scanned."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
    from django.core.cache import cache
    from django.test import Client
    from django.utils import timezone

    from api.services import apikey_create
    from certificates.services import certificate_store_der
    from keychest.accounts.services import personal_team_ensure, user_create
    from lab.ctlog.certgen import issue, make_ca
    from monitors.models import ScanResult, Server

    cache.clear()
    user = user_create(email="bench@example.org")
    team = personal_team_ensure(user=user)
    secret = apikey_create(team=team, user=user, scopes=["read", "enrol"]).secret
    server = Server.objects.create(team=team, host="www.bench.example", port=443)
    issuer = make_ca("Bench CA")
    now = timezone.now()
    for i in range(ips):
        cert = certificate_store_der(der=issue(issuer, ["www.bench.example"]).certificate, source="scan")
        ScanResult.objects.create(
            team=team,
            server=server,
            address=f"192.0.2.{i + 1}",
            state_digest=cert.sha256,
            leaf_sha256=cert.sha256,
            chain_sha256=[cert.sha256],
            subject=cert.subject,
            issuer=cert.issuer,
            not_before=cert.not_before,
            not_after=cert.not_after,
            first_seen=now,
            last_seen=now,
        )
    body = (
        Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {secret}")
        .get("/api/v1.0/servers/expiration/www.bench.example")
        .json()
    )
    assert body["certificate_found"] and len(body["results"]) == ips, body
    from django.db import connections

    connections.close_all()
    return {"secret": secret, "expiration": body, "team_id": team.pk}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict[str, str], port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    """gunicorn with the production settings (gunicorn.conf.py: gthread), on `port`."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    process = subprocess.Popen(
        [
            gunicorn,
            "keychest.wsgi:application",
            "--config",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--log-level",
            "warning",
        ],
        cwd=str(ROOT),
        env={**os.environ, **env},
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not start")


TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _processes() -> list[tuple[int, int, str]]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out.append((int(entry), ppid, cmdline))
    return out


def cpu_groups(server_pid: int, database: str) -> dict[str, list[int]]:
    """Where the server side of a request spends CPU: the gunicorn processes, this database's
    PostgreSQL backends, and Redis (shared with anything else using it)."""
    procs = _processes()
    return {
        "gunicorn": [pid for pid, ppid, _ in procs if pid == server_pid or ppid == server_pid],
        "postgresql": [pid for pid, _, cmd in procs if cmd.startswith("postgres:") and f" {database} " in cmd],
        "redis": [pid for pid, _, cmd in procs if cmd.startswith("redis-server")],
    }


def cpu_sample(groups: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    return {name: {pid: _proc_cpu(pid) for pid in pids} for name, pids in groups.items()}


def cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds per group between two samples, by process: one that started in between counts
    from zero; one that ended in between (an autovacuum worker, say) is lost, never negative."""
    return {
        name: sum(max(0.0, cpu - before.get(name, {}).get(pid, 0.0)) for pid, cpu in pids.items())
        for name, pids in after.items()
    }


def client(
    port: int, method: str, path: str, headers: dict[str, str], body: str, seconds: float, offset: int, out: Any
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    queries = 0
    errors = 0
    n = 0
    worker = ""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        i = offset + n
        started = time.perf_counter()
        conn.request(method, path.format(i=i), body=body.format(i=i) if body else None, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        if response.status >= 300:
            errors += 1
        queries += int(response.getheader("X-Queries") or 0)
        worker = response.getheader("X-Worker") or ""
        n += 1
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out.put({"n": n, "latencies": latencies, "queries": queries, "errors": errors, "worker": worker})


def run(port: int, *, workers: int = 0, **kwargs: Any) -> dict[str, Any]:
    """One path's run; repeated (at most twice) while some gunicorn worker got no connection.
    Which worker accepts a keep-alive connection is chance, and when all 4 clients land on one
    of the 2 workers, that process's GIL is the limit: the run measures where the connections
    landed, not the code. The same rule holds for every path, bare or not."""
    result = run_once(port, **kwargs)
    reruns = 0
    while workers and reruns < 2 and not _even(result["connections_per_worker"], workers, kwargs["clients"]):
        result = run_once(port, **kwargs)
        reruns += 1
    result["reruns_for_uneven_split"] = reruns
    return result


def _even(split: list[int], workers: int, clients: int) -> bool:
    """Every worker holds a connection (a 3/1 split measured as fast as 2/2; 4/0 at half)."""
    return len(split) == min(workers, clients)


def run_once(
    port: int,
    *,
    method: str,
    path: str,
    headers: dict[str, str],
    body: str,
    seconds: float,
    clients: int,
    offset: int,
    cpu: Any = None,
) -> dict[str, Any]:
    queue: multiprocessing.Queue[dict[str, Any]] = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(
            target=client, args=(port, method, path, headers, body, seconds, offset + c * 10_000_000, queue)
        )
        for c in range(clients)
    ]
    groups = cpu() if cpu else {}
    cpu_before = cpu_sample(groups)
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    parts = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - started
    used = cpu_used(cpu_before, cpu_sample(cpu() if cpu else {}))
    total = sum(p["n"] for p in parts)
    latencies = sorted(x for p in parts for x in p["latencies"])
    return {
        "requests": total,
        "rps": round(total / elapsed, 1),
        "errors": sum(p["errors"] for p in parts),
        "queries_per_request": round(sum(p["queries"] for p in parts) / max(total, 1), 2),
        # Keep-alive connections per gunicorn worker (the last one each client used; see run()).
        "connections_per_worker": sorted(Counter(p["worker"] for p in parts).values(), reverse=True),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2) if latencies else None,
        # Server-side CPU per request (ms), by process group: where the time goes.
        "cpu_ms_per_request": {name: round(seconds * 1000 / max(total, 1), 3) for name, seconds in used.items()},
    }


# Each scenario: the project's request, then the bare view's (method, path, headers key, body).
SCENARIOS = {
    "servers_expiration": (
        ("GET", "/api/v1.0/servers/expiration/www.bench.example", "auth", ""),
        ("GET", "/bare/servers/expiration/www.bench.example", "auth", ""),
    ),
    "servers_add": (
        ("POST", "/api/v1.0/servers/add", "form", "domain=h{i}.bench.example"),
        ("POST", "/bare/servers/add", "form", "domain=h{i}.bench.example"),
    ),
    # What deploy hooks mostly send: a server the team already watches.
    "servers_add_again": (
        ("POST", "/api/v1.0/servers/add", "form", "domain=www.bench.example"),
        ("POST", "/bare/servers/add", "form", "domain=www.bench.example"),
    ),
}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=4)
    # The production defaults of gunicorn.conf.py on this machine: a process per core, 4 threads.
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--ips", type=int, default=4, help="addresses of the watched server")
    return parser.parse_args()


def _ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> float | None:
    return round(numerator["rps"] / denominator["rps"], 3) if denominator["rps"] else None


def _measure(port: int, headers: dict[str, dict[str, str]], common: dict[str, Any]) -> dict[str, Any]:
    """Every scenario, the bare view first, each with its own range of host numbers."""
    # Warm both paths (imports, connections) before measuring.
    for path in ("/api/v1.0/servers/expiration/www.bench.example", "/bare/servers/expiration/www.bench.example"):
        run(port, method="GET", path=path, headers=headers["auth"], body="", seconds=1, clients=2, offset=0)
    # Second references: for the expiration call, the bare view plus one Redis command and one
    # SQL statement (the floor for any answer that touches both servers); for enrolment, the
    # bare view plus the same durable INSERT in plain SQL (the write any enrolment needs).
    floors = {
        "servers_add": ("insert", "POST", "/bare-insert/servers/add", "form", "domain=b{i}.bench.example"),
        "servers_expiration": ("io", "GET", "/bare-io/servers/expiration/www.bench.example", "auth", ""),
    }
    references = {
        name: (label, run(port, method=method, path=path, headers=headers[kind], body=body, offset=0, **common))
        for name, (label, method, path, kind, body) in floors.items()
    }
    results: dict[str, Any] = {}
    for offset, (name, (keychest, bare)) in enumerate(SCENARIOS.items(), start=1):
        measured = [
            run(
                port,
                method=method,
                path=path,
                headers=headers[kind],
                body=body,
                offset=offset * 100_000_000,
                **common,
            )
            for method, path, kind, body in (bare, keychest)
        ]
        bare_result, kc_result = measured
        results[name] = {"keychest": kc_result, "bare": bare_result, "ratio": _ratio(kc_result, bare_result)}
        if name in references:
            label, reference = references[name]
            results[name][f"bare_with_{label}"] = reference
            results[name][f"ratio_to_bare_with_{label}"] = _ratio(kc_result, reference)
    return results


def main() -> None:
    args = _arguments()
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DB
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/4"
    ensure_database(database_url)
    env = configure(database_url, redis_url)
    data = build_data(ips=args.ips)
    env["KEYCHEST_BENCH_EXPIRATION_JSON"] = json.dumps(data["expiration"])
    env["KEYCHEST_BENCH_TEAM_ID"] = str(data["team_id"])
    port = free_port()
    server = start_gunicorn(env, port, args.workers, args.threads)
    auth = {"Authorization": f"Bearer {data['secret']}"}
    headers = {"auth": auth, "form": {**auth, "Content-Type": "application/x-www-form-urlencoded"}}
    database = database_url.rsplit("/", 1)[1]
    common = {
        "seconds": args.seconds,
        "clients": args.clients,
        "cpu": lambda: cpu_groups(server.pid, database),
        "workers": args.workers,
    }
    try:
        results = _measure(port, headers, common)
    finally:
        server.terminate()
        server.wait(10)
    print(
        json.dumps(
            {
                "benchmark": "api",
                "database": "postgresql",
                "server": f"gunicorn gthread, {args.workers} workers x {args.threads} threads",
                "clients": args.clients,
                "seconds_per_path": args.seconds,
                "ips_per_server": args.ips,
                "cpus": os.cpu_count(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
