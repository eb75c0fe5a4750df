"""Scan throughput: the project's scan path against a bare asyncio TLS-handshake loop.

    flock /tmp/kc-bench.lock .venv/bin/python bench/scan_throughput.py [--addresses 1000] [--no-memory]

A lab process serves one wildcard certificate on `--addresses` loopback addresses (127.1.x.y,
one common port) and answers DNS for `--addresses / 4` names with four addresses each. In a
child process per size, the same servers are scanned:

- project: `manage.py scan --all --sync` (DNS through the lab resolver, connect, handshake,
  validation, certificate store, results, findings and events written to a throw-away test
  database — PostgreSQL when DATABASE_URL is set, else SQLite), twice: the first scan of new
  servers (every address also gets the TLS 1.0/1.1 probe) and the steady-state rescan (the
  legacy probe is due once a day; DNS is re-resolved; nothing changed, so rows are touched);
- bare: a loop of `asyncio.open_connection(..., ssl=...)` handshakes over the same addresses
  with the same concurrency, nothing parsed, nothing stored.

Prints JSON with both rates (addresses/s), their ratio, and the peak RSS of the child for N and
4N addresses (memory must stay flat: scans run in batches).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import ssl
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADDRESSES_PER_NAME = 4
DOMAIN = "bench.keychest.test"


def _addresses(count: int) -> list[str]:
    return [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]


def _lab_main(count: int, conn) -> None:  # type: ignore[no-untyped-def]
    """The lab process: TLS on `count` addresses, DNS for count/4 names; runs until told to stop."""
    from lab.dns import LabDNS
    from lab.tls import Lab

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lab = Lab()
    addresses = _addresses(count)
    endpoint = lab.tls(lab.leaf([f"*.{DOMAIN}"]), hosts=addresses)
    dns = LabDNS().start()
    names = []
    for i in range(0, count, ADDRESSES_PER_NAME):
        name = f"s{i // ADDRESSES_PER_NAME}.{DOMAIN}"
        dns.set(name, addresses[i : i + ADDRESSES_PER_NAME])
        names.append(name)
    conn.send({"port": endpoint.port, "nameserver": dns.nameserver, "root_pem": lab.root_pem, "names": names})
    conn.recv()  # stop
    dns.stop()
    lab.stop()


async def _bare(addresses: list[str], port: int, concurrency: int) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(address: str, index: int) -> None:
        nonlocal done
        async with gate:
            name = f"s{index // ADDRESSES_PER_NAME}.{DOMAIN}"
            try:
                _reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(address, port, ssl=ctx, server_hostname=name), 10
                )
            except (OSError, TimeoutError):
                return
            writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            writer.close()
            done += 1

    await asyncio.gather(*(one(a, i) for i, a in enumerate(addresses)))
    return done


def child(count: int, concurrency: int) -> dict[str, object]:
    """One measured run in this process: bare loop, then the project path."""
    parent_end, child_end = multiprocessing.Pipe()
    lab = multiprocessing.get_context("fork").Process(target=_lab_main, args=(count, child_end), daemon=True)
    lab.start()
    info = parent_end.recv()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    addresses = _addresses(count)

    started = time.perf_counter()
    cpu_started = time.process_time()
    bare_ok = asyncio.run(_bare(addresses, info["port"], concurrency))
    bare_seconds = time.perf_counter() - started
    bare_cpu = time.process_time() - cpu_started

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keychest.settings_test")
    import django

    django.setup()
    from io import StringIO

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
    settings.KEYCHEST_DNS_NAMESERVERS = [info["nameserver"]]
    settings.KEYCHEST_SCAN_CONCURRENCY = concurrency
    settings.KEYCHEST_SCAN_BATCH = 50  # scan --sync takes 5 batches (250 servers, 1000 addresses) at a time
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        from keychest.accounts.models import Team
        from monitors.models import Server, TeamCABundle

        team = Team.objects.create(name="bench")
        bundle = TeamCABundle.objects.create(team=team, name="lab", pem=info["root_pem"])
        Server.objects.bulk_create(
            [Server(team=team, host=name, port=info["port"], ca_bundle=bundle) for name in info["names"]],
            batch_size=1000,
        )

        def timed_scan() -> tuple[float, float, str]:
            out = StringIO()
            started = time.perf_counter()
            cpu_started = time.process_time()
            if os.environ.get("KC_BENCH_PROFILE"):
                import cProfile

                cProfile.runctx(
                    'call_command("scan", "--all", "--sync", "--json", stdout=out)',
                    globals(),
                    {"call_command": call_command, "out": out},
                    os.environ["KC_BENCH_PROFILE"],
                )
            else:
                call_command("scan", "--all", "--sync", "--json", stdout=out)
            return time.perf_counter() - started, time.process_time() - cpu_started, out.getvalue()

        # First scan: new servers, every address also gets the TLS 1.0/1.1 probe; the rescan is
        # the steady state (DNS re-resolved, legacy probe not due, nothing changed).
        cold_seconds, cold_cpu, _ = timed_scan()
        project_seconds, project_cpu, output = timed_scan()
        summary = json.loads(output)
        from monitors.models import ScanResult

        stored = ScanResult.objects.filter(current=True).exclude(leaf_sha256="").count()
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)
        parent_end.send("stop")
        lab.join(10)
    return {
        "addresses": count,
        "servers": len(info["names"]),
        "concurrency": concurrency,
        "database": connection.vendor,
        "project_first_scan": {
            "seconds": round(cold_seconds, 3),
            "addresses_per_second": round(count / cold_seconds, 1),
            "cpu_seconds": round(cold_cpu, 3),
        },
        "project": {
            "seconds": round(project_seconds, 3),
            "addresses_per_second": round(count / project_seconds, 1),
            "cpu_seconds": round(project_cpu, 3),
            "results_with_certificate": stored,
            "findings": summary["findings"],
        },
        "bare": {
            "seconds": round(bare_seconds, 3),
            "addresses_per_second": round(count / bare_seconds, 1),
            "cpu_seconds": round(bare_cpu, 3),
            "handshakes_ok": bare_ok,
        },
        "ratio": round(bare_seconds / project_seconds, 3),
        "ratio_first_scan": round(bare_seconds / cold_seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addresses", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--no-memory", action="store_true", help="skip the 4N run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.addresses, args.concurrency)))
        return
    sizes = [args.addresses] if args.no_memory else [args.addresses, 4 * args.addresses]
    runs = []
    for size in sizes:
        command = [
            sys.executable,
            __file__,
            "--child",
            "--addresses",
            str(size),
            "--concurrency",
            str(args.concurrency),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first = runs[0]
    report = {
        "benchmark": "scan_throughput",
        "addresses": first["addresses"],
        "project_addresses_per_second": first["project"]["addresses_per_second"],
        "bare_addresses_per_second": first["bare"]["addresses_per_second"],
        "ratio": first["ratio"],
        "project_first_scan_addresses_per_second": first["project_first_scan"]["addresses_per_second"],
        "ratio_first_scan": first["ratio_first_scan"],
        "peak_rss_mb": {str(r["addresses"]): r["peak_rss_mb"] for r in runs},
        "runs": runs,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
