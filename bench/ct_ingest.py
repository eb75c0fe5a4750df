"""Benchmark: CT ingestion end-to-end (local logs over HTTP -> verify -> PostgreSQL -> matching) vs a bare parse.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kc_ct flock /tmp/kc-bench.lock \\
        .venv/bin/python bench/ct_ingest.py            # scaled for a shared 2-core machine
    ... bench/ct_ingest.py --full                      # the sizes of issue #4 (200k entries, 1M names)

Runs in a throw-away database (test_<name>, created and dropped here). The two local logs (one
RFC 6962, one static-ct-api) run in a separate process, so serving does not share this process's
interpreter. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import pickle
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _serve_logs(
    per_log: int, list_path: str, ders_path: str, domains_path: str, ready: mp.Queue, stop: mp.Event
) -> None:
    """Child process: two local logs filled with `per_log` entries each, served until told to stop."""
    from lab.ctlog.server import RFC6962, STATIC, LocalCTLog, write_log_list

    logs = [LocalCTLog(api=api, seed=i + 11, max_batch=1024).start() for i, api in enumerate((RFC6962, STATIC))]
    t0 = time.perf_counter()
    ders: list[bytes] = []
    domains: set[str] = set()
    for log in logs:
        log.add_random(per_log)
    generate = time.perf_counter() - t0
    from kcproto.ctformat import parse_rfc6962_entry

    for log in logs:
        for entry in log.entries:
            e = parse_rfc6962_entry(0, entry.leaf_input, entry.extra_data)
            ders.append(e.der)
    from kcproto.names import registered_domain
    from kcproto.x509 import parse_certificate

    rng = random.Random(5)
    for der in rng.sample(ders, min(len(ders), 5000)):
        for name in parse_certificate(der).names:
            d = registered_domain(name)
            if d:
                domains.add(d)
    write_log_list(list_path, logs)
    Path(ders_path).write_bytes(pickle.dumps(ders))
    Path(domains_path).write_text("\n".join(sorted(domains)))
    ready.put({"generate_seconds": round(generate, 2), "entries": sum(log.published_size for log in logs)})
    stop.wait()
    for log in logs:
        log.stop()


def _cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of a process so far: this one, or e.g. our PostgreSQL backend."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


def _cpu_split(before: tuple[float, float], backend: int, entries: int, timings: dict[str, float]) -> dict[str, object]:
    """Microseconds of CPU per entry in this ingestion process (all its threads) and in its backend.

    `python_steps_us_per_entry` splits the ingesting thread's CPU by step (parse, store,
    match_commit, as `RoundResult.timings` measures them); "other" is the rest of the process:
    mostly the prefetch thread (HTTP, JSON/base64, CT entry decoding), then the round's setup.
    """
    if not entries:
        return {"python_us_per_entry": 0, "postgres_us_per_entry": 0}
    python = _cpu_seconds() - before[0]
    postgres = _cpu_seconds(backend) - before[1]
    steps = {k.removesuffix("_cpu"): v for k, v in timings.items() if k.endswith("_cpu")}
    steps["other"] = python - sum(steps.values())
    return {
        "python_us_per_entry": round(python / entries * 1e6, 1),
        "postgres_us_per_entry": round(postgres / entries * 1e6, 1),
        "python_steps_us_per_entry": {k: round(v / entries * 1e6, 1) for k, v in steps.items()},
    }


def _ingest_worker(db_name: str, log_pk: int, barrier: mp.Barrier, out: mp.Queue) -> None:
    """Child process: one log's ingestion, as one Celery worker process would run it."""
    import django

    django.setup()
    from django.db import connection

    connection.settings_dict["NAME"] = db_name
    from certificates.ingest import ct_log_ingest
    from certificates.matching import matcher
    from certificates.models import CTLog

    log = CTLog.objects.get(pk=log_pk)
    matcher.index()  # built once at worker start, not per certificate
    backend = _backend_pid()
    barrier.wait()
    t0 = time.perf_counter()
    cpu = (_cpu_seconds(), _cpu_seconds(backend))
    r = ct_log_ingest(log)
    seconds = time.perf_counter() - t0
    split = _cpu_split(cpu, backend, r.entries, r.timings)
    out.put(
        {
            "kind": log.kind,
            "entries": r.entries,
            "seconds": round(seconds, 2),
            "entries_per_s": round(r.entries / seconds, 1) if seconds else 0,
            "events": r.events,
            "error": r.error,
            "caught_up": r.caught_up,
            "timings_s": {k: round(v, 2) for k, v in r.timings.items() if not k.endswith("_cpu")},
            "cpu": split,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "end": time.time(),
        }
    )


def bare_parse(ders: list[bytes]) -> float:
    """Entries per second of a loop that only reads, with cryptography, what ingestion needs to know."""
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID

    t0 = time.perf_counter()
    for der in ders:
        cert = x509.load_der_x509_certificate(der)
        with contextlib.suppress(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(
                x509.DNSName
            )
        cert.subject.rfc4514_string()
        cert.not_valid_after_utc  # noqa: B018 - reading is the work
    return len(ders) / (time.perf_counter() - t0)


def setup_tenants(teams: int, watched: int, real_domains: list[str], real_count: int) -> int:
    from keychest.accounts.models import Team
    from monitors.models import WatchedDomain

    Team.objects.bulk_create([Team(name=f"bench team {i}") for i in range(teams)], batch_size=1000)
    team_ids = list(Team.objects.values_list("id", flat=True))
    rng = random.Random(7)
    # `real_count` watched domains really occur in the logs; the rest never match.
    real = rng.sample(real_domains, min(len(real_domains), real_count))
    names = set(real)
    while len(names) < watched:
        names.add(f"watched{rng.randrange(10**9)}.{rng.choice(['com', 'net', 'org', 'de', 'co.uk'])}")
    rows = [
        WatchedDomain(team_id=team_ids[i % len(team_ids)], domain=name, include_subdomains=True)
        for i, name in enumerate(sorted(names))
    ]
    WatchedDomain.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def table_bytes_per_row() -> dict[str, dict[str, float]]:
    """On-disk size per row (heap + TOAST + indexes) of the store's tables, as measured."""
    from django.db import connection

    out = {}
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
        for table in ("certificates_certificate", "certificates_certificatename", "certificates_certificatesource"):
            cur.execute(f"SELECT count(*), pg_table_size('{table}'), pg_indexes_size('{table}') FROM {table}")
            rows, heap, indexes = cur.fetchone()
            out[table] = {
                "rows": rows,
                "table_bytes_per_row": round(heap / rows, 1) if rows else 0,
                "index_bytes_per_row": round(indexes / rows, 1) if rows else 0,
            }
    return out


def pad_name_table(target: int) -> int:
    """Top the name table up to `target` rows with synthetic names (for the look-up latency part)."""
    from django.db import connection

    from certificates.models import Certificate, CertificateName

    have = CertificateName.objects.count()
    missing = target - have
    if missing > 0:
        lo = Certificate.objects.order_by("id").values_list("id", flat=True).first()
        count = Certificate.objects.count()
        with connection.cursor() as cur:
            cur.execute(
                """
                INSERT INTO certificates_certificatename
                    (certificate_id, name, reversed_name, registered_domain, is_wildcard, not_before, not_after)
                SELECT %s + (i %% %s), 'h' || i || '.pad' || (i / 8) || '.example',
                       'example.pad' || (i / 8) || '.h' || i, 'pad' || (i / 8) || '.example', false,
                       now() - (i %% 400) * interval '1 day', now() + (90 - i %% 400) * interval '1 day'
                FROM generate_series(1, %s) AS i
                """,
                [lo, count, missing],
            )
            cur.execute("ANALYZE certificates_certificatename; ANALYZE certificates_certificate")
    return CertificateName.objects.count()


def lookups(domains: list[str], n: int) -> dict[str, float]:
    from certificates.services import certificates_for

    rng = random.Random(9)
    samples = []
    asked = []
    for _ in range(n):
        d = rng.choice(domains)
        t0 = time.perf_counter()
        list(certificates_for(d)[:100])
        samples.append((time.perf_counter() - t0) * 1000)
        asked.append(d)
    slowest_domain = asked[max(range(n), key=samples.__getitem__)]
    samples.sort()
    return {
        "queries": n,
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3),
        "max_ms": round(samples[-1], 3),
        "slowest_domain": slowest_domain,
        "slowest_plan": explain(slowest_domain),
    }


def explain(domain: str) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the look-up query for `domain`, as PostgreSQL plans it."""
    from django.db import connection

    from certificates.services import certificates_for

    sql, params = certificates_for(domain)[:100].query.sql_with_params()
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return [row[0] for row in cur.fetchall()]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--full", action="store_true", help="issue sizes: 200k entries, 100k watched, 1k teams, 1M names"
    )
    parser.add_argument("--entries", type=int, help="entries in all (half per log API); default 20000 (--full 200000)")
    parser.add_argument("--watched", type=int, default=100_000, help="watched domains")
    parser.add_argument("--teams", type=int, default=1_000, help="teams owning them")
    parser.add_argument("--names", type=int, help="name-table rows for look-ups; default 300000 (--full 1000000)")
    parser.add_argument("--lookups", type=int, default=2000, help="look-up queries to time")
    parser.add_argument(
        "--match-share", type=float, default=0.01, help="share of entries whose domain is watched (default 1%%)"
    )
    parser.add_argument("--profile", help="write a cProfile of the ingestion to this file (with --workers 1)")
    parser.add_argument("--workers", type=int, default=2, help="ingestion processes (1: both logs in this process)")
    parser.add_argument("--chunk", type=int, default=4096, help="KEYCHEST_CT_CHUNK")
    parser.add_argument("--parallel", type=int, default=4, help="KEYCHEST_CT_PARALLEL")
    args = parser.parse_args()
    args.entries = args.entries or (200_000 if args.full else 20_000)
    args.names = args.names or (1_000_000 if args.full else 300_000)
    return args


def _ingest_in_workers(ctx: Any, logs: list, test_db: str) -> tuple[dict[str, dict[str, object]], int, float]:
    """One process per log, as separate Celery worker processes would do it."""
    barrier, out = ctx.Barrier(len(logs) + 1), ctx.Queue()
    workers = [ctx.Process(target=_ingest_worker, args=(test_db, log.pk, barrier, out)) for log in logs]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.time()
    reports = [out.get(timeout=7200) for _ in workers]
    wall = max(r["end"] for r in reports) - started
    for w in workers:
        w.join()
    per_api: dict[str, dict[str, object]] = {}
    total_entries = 0
    for r in reports:
        if r["error"] or not r["caught_up"]:
            raise SystemExit(f"ingestion of a {r['kind']} log failed: {r['error']}")
        total_entries += r["entries"]
        per_api[r["kind"]] = {k: v for k, v in r.items() if k not in ("kind", "end", "error", "caught_up")}
    return per_api, total_entries, total_entries / wall


def _ingest_here(logs: list, profile: str | None) -> tuple[dict[str, dict[str, object]], int, float]:
    """Both logs in turn in this process (optionally under cProfile)."""
    from certificates.ingest import ct_log_ingest

    per_api: dict[str, dict[str, object]] = {}
    total_entries = 0
    t_all = time.perf_counter()
    for log in logs:
        backend = _backend_pid()
        t0 = time.perf_counter()
        cpu = (_cpu_seconds(), _cpu_seconds(backend))
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            r = profiler.runcall(ct_log_ingest, log)
            profiler.dump_stats(f"{profile}.{log.kind}")
        else:
            r = ct_log_ingest(log)
        seconds = time.perf_counter() - t0
        if r.error or not r.caught_up:
            raise SystemExit(f"ingestion of {log.description} failed: {r.error}")
        total_entries += r.entries
        per_api[log.kind] = {
            "entries": r.entries,
            "seconds": round(seconds, 2),
            "entries_per_s": round(r.entries / seconds, 1),
            "events": r.events,
            "timings_s": {k: round(v, 2) for k, v in r.timings.items() if not k.endswith("_cpu")},
            "cpu": _cpu_split(cpu, backend, r.entries, r.timings),
        }
    return per_api, total_entries, total_entries / (time.perf_counter() - t_all)


def _run(args: argparse.Namespace, ctx: Any, server: Any, paths: tuple[Path, Path], test_db: str) -> dict[str, object]:
    """Tenants, ingestion of both logs, the bare parse and the name look-ups, in the test database."""
    from certificates.logs import ct_log_reset, ct_logs_sync
    from certificates.matching import matcher
    from certificates.models import Certificate, CertificateName, CTLog
    from notifications.models import Event

    ders_path, domains_path = paths
    result: dict[str, object] = {}
    ders = pickle.loads(ders_path.read_bytes())
    real_domains = domains_path.read_text().split()
    t0 = time.perf_counter()
    watched = setup_tenants(args.teams, args.watched, real_domains, int(args.entries * args.match_share))
    result["setup_tenants_seconds"] = round(time.perf_counter() - t0, 2)

    logs = [ct_log_reset(log=log, start_index=0) for log in ct_logs_sync()]
    t0 = time.perf_counter()
    index = matcher.index()
    result["watch_index"] = {"watches": index.count, "build_seconds": round(time.perf_counter() - t0, 3)}

    server_cpu = _cpu_seconds(server.pid)
    if args.workers > 1:
        per_api, total_entries, end_to_end = _ingest_in_workers(ctx, logs, test_db)
    else:
        per_api, total_entries, end_to_end = _ingest_here(logs, args.profile)
    ingest_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Serving is not KeyChest's work, but it shares the machine's two cores during the run.
    server_us = (_cpu_seconds(server.pid) - server_cpu) / max(1, total_entries) * 1e6

    bare = max(bare_parse(ders) for _ in range(2))
    ingested_names = CertificateName.objects.count()
    result["bytes_per_row"] = table_bytes_per_row()
    table = pad_name_table(args.names)
    domains = real_domains + [f"pad{i}.example" for i in random.Random(3).sample(range(args.names // 8), 2000)]
    lookup = lookups(domains, args.lookups)
    return {
        **result,
        "entries": total_entries,
        "teams": args.teams,
        "watched_domains": watched,
        "per_api": per_api,
        "end_to_end_entries_per_s": round(end_to_end, 1),
        "bare_parse_entries_per_s": round(bare, 1),
        "ratio_end_to_end_to_bare": round(end_to_end / bare, 3),
        "certificates_stored": Certificate.objects.count(),
        "events_recorded": Event.objects.count(),
        "names_in_table": table,
        "ingested_names": ingested_names,
        "lookup_certificates_for": lookup,
        "peak_rss_mb": {"bench_process": round(ingest_rss, 1)},
        "log_server_cpu_us_per_entry": round(server_us, 1),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "log_positions": dict(CTLog.objects.values_list("kind", "position")),
        "settings": {
            "chunk": args.chunk,
            "parallel": args.parallel,
            "full": args.full,
            "match_share": args.match_share,
            "workers": args.workers,
        },
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    args = _arguments()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (the benchmark creates and drops test_<name>)")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keychest.settings_test")
    os.environ["KEYCHEST_CT_CHUNK"] = str(args.chunk)
    os.environ["KEYCHEST_CT_PARALLEL"] = str(args.parallel)

    tmp = Path(tempfile.mkdtemp(prefix="kc-bench-"))
    list_path, ders_path, domains_path = tmp / "log_list.json", tmp / "ders.pickle", tmp / "domains.txt"
    os.environ["KEYCHEST_CT_LOG_LIST"] = str(list_path)
    os.environ["KEYCHEST_ALLOW_PRIVATE_TARGETS"] = "1"  # the local logs listen on 127.0.0.1
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(
        target=_serve_logs, args=(args.entries // 2, str(list_path), str(ders_path), str(domains_path), ready, stop)
    )
    server.start()
    served = ready.get(timeout=3600)

    import django

    django.setup()
    from django.db import connection

    # A database of its own, so a benchmark never collides with a test run on test_<name>.
    connection.settings_dict["TEST"] = {
        **connection.settings_dict.get("TEST", {}),
        "NAME": f"{connection.settings_dict['NAME']}_bench",
    }
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    result: dict[str, object] = {"benchmark": "ct_ingest", "database": test_db, "served": served}
    try:
        result.update(_run(args, ctx, server, (ders_path, domains_path), test_db))
    finally:
        stop.set()
        server.join(timeout=30)
        connection.creation.destroy_test_db(test_db, verbosity=0)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
