"""Scan throughput on the user's paths against a bare asyncio DNS + TLS-handshake loop.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kc_bench_scan REDIS_URL=redis://127.0.0.1:6379/0 \\
        flock /tmp/kc-bench.lock .venv/bin/python bench/scan_throughput.py [--servers 2000] [--servers 10000]

A lab process serves `--certificates` (default 100) certificates of one private CA for one
registered domain (each names the servers it is served on) on `--servers` loopback addresses (127.1.x.y, one address per server) and
answers DNS for one name per server. Then, in one run:

- bare: a loop of dnspython A + AAAA look-ups and `asyncio.open_connection(..., ssl=...)`
  handshakes over the same names with the same concurrency, nothing parsed or stored (run
  before and after the project paths; the ratio is against their mean);
- `manage.py scan --all --sync` as a user runs it (its own process, production settings,
  `DEBUG=0`), first scan of the new servers, then the rescan (DNS re-resolved, as `--sync` does;
  the daily legacy-TLS and second-key probes not due; nothing changed);
- the Celery path: a worker as docker-compose runs it (`celery -A keychest worker
  --concurrency 4`, Redis broker) and `manage.py scan --all` queueing batches, timed from the
  command's start until every server's `last_scan_at` is past it; first scan, then rescan.

Each path starts from a new test database (`test_<DATABASE_URL's name>`, created and dropped
here), servers enrolled in bulk. The lab counts the TLS connections it accepts, so the first
scan is also reported per handshake (it adds TLS 1.0/1.1 probes and the second key type).
The load average is printed with every figure: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOMAIN = "bench.keychest.test"
WORKER_OPTIONS = ["-l", "warning", "--concurrency", "4"]  # docker-compose.yml's worker


def _addresses(count: int) -> list[str]:
    return [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]


def _name(index: int) -> str:
    return f"s{index}.{DOMAIN}"


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _lab_main(count: int, certificates: int, conn) -> None:  # type: ignore[no-untyped-def]
    """The lab process: TLS on `count` addresses, DNS for one name each; counts connections."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from lab.dns import LabDNS
    from lab.tls import Lab

    _raise_nofile()
    accepted = [0]

    class CountingLab(Lab):
        def _listen(self, hosts, handler, kind, port=0):  # type: ignore[no-untyped-def]
            async def counted(reader, writer):  # type: ignore[no-untyped-def]
                accepted[0] += 1
                await handler(reader, writer)

            return super()._listen(hosts, counted, kind, port)

    lab = CountingLab()
    addresses = _addresses(count)
    per = max(1, -(-count // certificates))
    ports: list[int] = []
    chain: list[bytes] = []
    for start in range(0, count, per):
        issued = lab.leaf([_name(i) for i in range(start, min(start + per, count))])
        endpoint = lab.tls(issued, hosts=addresses[start : start + per])
        ports.extend([endpoint.port] * len(addresses[start : start + per]))
        chain = chain or [issued.der, *(p.public_bytes(Encoding.DER) for p in issued.parents[:-1])]
    dns = LabDNS().start()
    for i, address in enumerate(addresses):
        dns.set(_name(i), [address])
    conn.send({"ports": ports, "nameserver": dns.nameserver, "root_pem": lab.root_pem, "chain": chain})
    while (message := conn.recv()) != "stop":
        if message == "count":
            conn.send(accepted[0])
    dns.stop()
    lab.stop()


async def _bare(count: int, ports: list[int], nameserver: str, concurrency: int) -> int:
    import dns.asyncresolver

    host, _, port = nameserver.rpartition(":")
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(index: int) -> None:
        nonlocal done
        name = _name(index)
        async with gate:
            answers = await asyncio.gather(
                resolver.resolve(name, "A", lifetime=5, search=False),
                resolver.resolve(name, "AAAA", lifetime=5, search=False),
                return_exceptions=True,
            )
            addresses = [r.address for a in answers if not isinstance(a, BaseException) for r in a]
            for address in addresses:
                try:
                    _reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(address, ports[index], ssl=ctx, server_hostname=name), 10
                    )
                except (OSError, TimeoutError):
                    continue
                writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                writer.close()
                done += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    return done


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _env(database: str, nameserver: str, concurrency: int) -> dict[str, str]:
    """The environment of a user's deployment: production settings, DEBUG off."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "keychest.settings",
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-scan-throughput-secret-key-0123456789abcdefghijkl"),
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database,
        "KEYCHEST_ALLOW_PRIVATE_TARGETS": "1",
        "KEYCHEST_DNS_NAMESERVERS": nameserver,
        "KEYCHEST_SCAN_CONCURRENCY": str(concurrency),
        "KEYCHEST_CACHE_PREFIX": f"kc-bench-scan-{os.getpid()}",
    }


class Run:
    """One size: the lab, the bare loop, and both project paths, each on a fresh test database."""

    def __init__(self, count: int, certificates: int, concurrency: int) -> None:
        self.count = count
        self.concurrency = concurrency
        self.pipe, child_end = multiprocessing.Pipe()
        self.lab = multiprocessing.get_context("fork").Process(
            target=_lab_main, args=(count, certificates, child_end), daemon=True
        )
        self.lab.start()
        self.info = self.pipe.recv()

    def accepted(self) -> int:
        self.pipe.send("count")
        return int(self.pipe.recv())

    def stop(self) -> None:
        self.pipe.send("stop")
        self.lab.join(10)

    def bare(self) -> dict[str, Any]:
        load = _load()
        started = time.perf_counter()
        cpu = time.process_time()
        ok = asyncio.run(_bare(self.count, self.info["ports"], self.info["nameserver"], self.concurrency))
        seconds = time.perf_counter() - started
        return {
            "seconds": round(seconds, 3),
            "servers_per_second": round(self.count / seconds, 1),
            "cpu_seconds": round(time.process_time() - cpu, 3),
            "handshakes_ok": ok,
            "load_average": load,
        }

    def timed(self, action: Callable[[], None]) -> dict[str, Any]:
        load = _load()
        before = self.accepted()
        started = time.perf_counter()
        action()
        seconds = time.perf_counter() - started
        handshakes = self.accepted() - before
        return {
            "seconds": round(seconds, 3),
            "servers_per_second": round(self.count / seconds, 1),
            "handshakes": handshakes,
            "handshakes_per_second": round(handshakes / seconds, 1),
            "load_average": load,
        }


def _validation_cost(chain: list[bytes], root_pem: str, rounds: int = 300) -> float:
    """Seconds of CPU for one strict validation of a served chain (cryptography's verifier plus
    our diagnosis; issue 13), uncached: the worst case of every server serving its own chain."""
    from kcproto.validation import trust_store, validate

    store = trust_store(root_pem)
    validate(chain, _name(0), store)
    started = time.process_time()
    for _ in range(rounds):
        validate(chain, _name(0), store)
    return (time.process_time() - started) / rounds


def _enrol(count: int, ports: list[int], root_pem: str) -> None:
    from keychest.accounts.models import Team
    from monitors.models import Server, TeamCABundle

    team = Team.objects.create(name="bench")
    bundle = TeamCABundle.objects.create(team=team, name="lab", pem=root_pem)
    Server.objects.bulk_create(
        [Server(team=team, host=_name(i), port=ports[i], ca_bundle=bundle) for i in range(count)], batch_size=2000
    )


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def _path_sync(run: Run, env: dict[str, str]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    output: list[str] = []
    for phase in ("first_scan", "rescan"):
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        figures[phase] = run.timed(lambda: output.append(_manage(env, "scan", "--all", "--sync", "--json")))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # The scanning process's own CPU (steadier than wall-clock rates on a shared machine).
        figures[phase]["cpu_seconds"] = round(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, 3)
        figures[phase]["findings"] = json.loads(output[-1].strip().splitlines()[-1])["findings"]
    return figures


def _path_celery(run: Run, env: dict[str, str]) -> dict[str, Any]:
    from django.db.models import Count
    from django.utils import timezone

    from keychest.celery import app
    from monitors.models import Finding, Server

    app.control.purge()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "keychest",
            "worker",
            *WORKER_OPTIONS,
            "-n",
            f"bench-scan-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its pool processes are stopped with it
    )
    try:
        for _ in range(120):
            if app.control.ping(destination=[f"bench-scan-{os.getpid()}@{os.uname().nodename}"], timeout=0.5):
                break
        else:
            raise RuntimeError("the Celery worker did not come up")

        def queue_and_wait() -> None:
            since = timezone.now()
            _manage(env, "scan", "--all")
            deadline = time.monotonic() + 3600
            while Server.objects.filter(last_scan_at__gte=since).count() < run.count:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError("the Celery path did not scan every server")
                time.sleep(0.1)

        figures = {}
        for phase in ("first_scan", "rescan"):
            figures[phase] = run.timed(queue_and_wait)
            open_findings = Finding.objects.filter(resolved_at=None).values("code").annotate(n=Count("id"))
            figures[phase]["open_findings"] = {row["code"]: row["n"] for row in open_findings}
        return figures
    finally:
        worker.terminate()
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:  # a warm shutdown on a loaded machine: the figures are taken
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def child(count: int, certificates: int, concurrency: int) -> dict[str, Any]:
    """One size in this process: bare, both project paths, bare again."""
    _raise_nofile()
    run = Run(count, certificates, concurrency)
    os.environ.update(_env(os.environ.get("DATABASE_URL", ""), run.info["nameserver"], concurrency))
    import django

    django.setup()
    from django.db import connection

    report: dict[str, Any] = {"servers": count, "certificates": certificates, "concurrency": concurrency}
    try:
        bare = [run.bare()]
        base = connection.settings_dict["NAME"]
        for label, path in (("manage_py_scan_sync", _path_sync), ("celery", _path_celery)):
            test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
            try:
                _enrol(count, run.info["ports"], run.info["root_pem"])
                settings = connection.settings_dict
                database = (
                    f"postgres://{settings['USER']}:{settings['PASSWORD']}@{settings['HOST'] or '127.0.0.1'}:"
                    f"{settings['PORT'] or 5432}/{test_db}"
                )
                report[label] = path(run, _env(database, run.info["nameserver"], concurrency))
            finally:
                connection.creation.destroy_test_db(base, verbosity=0)
        bare.append(run.bare())
    finally:
        run.stop()
    per_validation = _validation_cost(run.info["chain"], run.info["root_pem"])
    rescan = report["manage_py_scan_sync"]["rescan"]
    report["validation"] = {
        "cpu_ms_per_chain": round(per_validation * 1000, 3),
        # The pass validates each distinct chain once; here 1 chain per server at worst.
        "worst_case_share_of_rescan": round(per_validation * count / rescan["seconds"], 3),
    }
    bare_rate = sum(b["servers_per_second"] for b in bare) / len(bare)
    report["bare"] = bare
    report["bare_servers_per_second"] = round(bare_rate, 1)
    first_bare = bare[0]["handshakes_ok"] / bare[0]["seconds"]
    for label in ("manage_py_scan_sync", "celery"):
        for phase in ("first_scan", "rescan"):
            figures = report[label][phase]
            figures["ratio"] = round(figures["servers_per_second"] / bare_rate, 3)
            figures["ratio_per_handshake"] = round(figures["handshakes_per_second"] / first_bare, 3)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, action="append", help="repeatable; default 2000")
    parser.add_argument("--certificates", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        parser.error("set DATABASE_URL (PostgreSQL; its test_ database is used) and REDIS_URL (the Celery broker)")
    if args.child:
        print(json.dumps(child(args.child, args.certificates, args.concurrency)))
        return
    runs = []
    for size in args.servers or [2000]:
        command = [sys.executable, __file__, "--child", str(size), "--certificates", str(args.certificates)]
        command += ["--concurrency", str(args.concurrency)]
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
        if done.returncode:
            sys.exit(done.stderr[-4000:])
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    summary = {
        str(r["servers"]): {
            "bare_servers_per_second": r["bare_servers_per_second"],
            "validation": r["validation"],
            **{
                f"{label}_{phase}": {
                    "servers_per_second": r[label][phase]["servers_per_second"],
                    "ratio": r[label][phase]["ratio"],
                    "ratio_per_handshake": r[label][phase]["ratio_per_handshake"],
                }
                for label in ("manage_py_scan_sync", "celery")
                for phase in ("first_scan", "rescan")
            },
        }
        for r in runs
    }
    print(json.dumps({"benchmark": "scan_throughput", "summary": summary, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
