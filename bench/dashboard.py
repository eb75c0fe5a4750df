"""Benchmark: the dashboard, servers list and certificates list for a big team, beside bare views.

A team with 10,000 watched servers and 30,000 certificates (10,000 served by the servers, 20,000
more known from CT under the team's watched domain) on PostgreSQL. For each page it measures
server time (request through the whole middleware stack to the rendered response, in-process)
and the query count, and in the same run a bare view that replays exactly the SQL the page's
view ran (the same aggregate queries) and renders a minimal template. The ratio bare/project
is how close the page gets to the cost of its SQL alone (target >= 0.5; dashboard <= 200 ms).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kc_bench flock /tmp/kc-bench.lock \\
        .venv/bin/python bench/dashboard.py [--servers 10000] [--certificates 30000] [--runs 15]
        [--pages servers] [--profile 40]

The project page and its bare view are requested in turns, so load from neighbours on a shared
machine weighs on both; `--profile N` adds a cProfile pass per page (top N functions, stderr).

The data is made once per database (a marker team) and reused by later runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keychest.settings_test")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.template import engines  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import include, path, reverse  # noqa: E402

ISSUERS = [
    "CN=R11,O=Let's Encrypt,C=US",
    "CN=E6,O=Let's Encrypt,C=US",
    "CN=Cloudflare Inc ECC CA-3,O=Cloudflare\\, Inc.,C=US",
    "CN=Amazon RSA 2048 M02,O=Amazon,C=US",
    "CN=DigiCert Global G2 TLS RSA SHA256 2020 CA1,O=DigiCert Inc,C=US",
    "CN=Sectigo RSA Domain Validation Secure Server CA,O=Sectigo Limited,C=GB",
]
FINDING_CODES = [
    "hostname_mismatch",
    "connect_failed",
    "self_signed",
    "expired",
    "ips_disagree",
    "untrusted",
    "timeout",
]
MARKER = "bench-dashboard"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _certificates(rng: random.Random, domain: str, now: datetime, n_certs: int) -> list:
    """n_certs thinned certificates under the domain, one name each; lifetimes and expiries spread."""
    from certificates.models import Certificate, CertificateName
    from kcproto.names import reversed_name

    certs = []
    for i in range(n_certs):
        lifetime = rng.choice([90, 90, 90, 45, 200, 398])
        left = rng.uniform(-20, lifetime)
        not_after = now + timedelta(days=left)
        digest = sha(f"{domain}:{i}")
        certs.append(
            Certificate(
                sha256=digest,
                der=b"",
                serial=f"{i:x}",
                issuer=rng.choice(ISSUERS),
                subject=f"CN=h{i}.{domain}",
                not_before=not_after - timedelta(days=lifetime),
                not_after=not_after,
                lifetime=timedelta(days=lifetime),
                key_type="EC",
                key_size=256,
                signature_algorithm="ecdsa-with-SHA256",
                issuance_key=digest,
                thinned=True,
            )
        )
    Certificate.objects.bulk_create(certs, batch_size=2000)
    ids = dict(Certificate.objects.filter(sha256__in=[c.sha256 for c in certs]).values_list("sha256", "id"))
    CertificateName.objects.bulk_create(
        [
            CertificateName(
                certificate_id=ids[cert.sha256],
                name=f"h{i}.{domain}",
                reversed_name=reversed_name(f"h{i}.{domain}"),
                registered_domain=domain,
                not_before=cert.not_before,
                not_after=cert.not_after,
            )
            for i, cert in enumerate(certs)
        ],
        batch_size=5000,
    )
    return certs


def _scan_state(team: object, servers: list, certs: list, rng: random.Random, now: datetime) -> None:
    """Server i serves certificate i on one address (two for every fifth); every 20th has a finding."""
    from monitors.models import Finding, ScanResult

    results, findings = [], []
    for i, server in enumerate(servers):
        cert = certs[i]
        for address in ("192.0.2.1",) if i % 5 else ("192.0.2.1", "192.0.2.2"):
            results.append(
                ScanResult(
                    team=team,
                    server=server,
                    address=address,
                    state_digest=sha(f"{i}{address}"),
                    leaf_sha256=cert.sha256,
                    chain_sha256=[cert.sha256],
                    subject=cert.subject,
                    issuer=cert.issuer,
                    names=[server.host],
                    not_before=cert.not_before,
                    not_after=cert.not_after,
                    tls_version="TLSv1.3",
                    trusted=True,
                    first_seen=now - timedelta(days=3),
                    last_seen=now,
                )
            )
        if i % 20 == 0:
            findings.append(
                Finding(
                    team=team,
                    server=server,
                    code=rng.choice(FINDING_CODES),
                    severity="error",
                    message="bench",
                    first_seen=now - timedelta(days=2),
                    last_seen=now,
                )
            )
    ScanResult.objects.bulk_create(results, batch_size=2000)
    Finding.objects.bulk_create(findings, batch_size=2000)


def populate(n_servers: int, n_certs: int) -> tuple[object, object]:
    """Make the team once; returns (team, user)."""
    from allauth.account.models import EmailAddress

    from keychest.accounts.models import Team, User
    from keychest.accounts.services import personal_team_ensure
    from monitors.models import Server, WatchedDomain

    email = f"{MARKER}-{n_servers}-{n_certs}@bench.example"
    user = User.objects.filter(email=email).first()
    if user is not None:
        return Team.objects.get(memberships__user=user), user
    rng = random.Random(7)
    started = time.monotonic()
    user = User.objects.create_user(email=email, password="bench-password-123")
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    team = personal_team_ensure(user=user)
    now = datetime.now(UTC)
    domain = f"{MARKER}-{n_servers}.example"
    WatchedDomain.objects.create(team=team, domain=domain)
    Server.objects.bulk_create(
        [
            Server(
                team=team,
                host=f"h{i}.{domain}",
                port=443,
                last_scan_at=now - timedelta(hours=rng.random() * 8),
                tags=["bench"] if i % 3 else ["bench", "prod"],
            )
            for i in range(n_servers)
        ],
        batch_size=2000,
    )
    servers = list(Server.objects.filter(team=team).order_by("id"))
    certs = _certificates(rng, domain, now, n_certs)
    _scan_state(team, servers, certs, rng, now)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"populated in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return team, user


# --- the bare view: replay the page view's own SQL, render a minimal template ------------------
REPLAY: dict[str, list[tuple[str, object]]] = {}
MINIMAL = engines["django"].from_string(
    "<html><body><p>{{ rows|length }} result sets, {{ total }} rows</p></body></html>"
)


def bare(request: HttpRequest, page: str) -> HttpResponse:
    total = 0
    rows = []
    with connection.cursor() as cursor:
        for sql, params in REPLAY[page]:
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
            rows.append(fetched)
            total += len(fetched)
    return HttpResponse(MINIMAL.render({"rows": rows, "total": total}))


urlpatterns = [
    path("__bench__/<str:page>/", bare),
    path("", include(settings.ROOT_URLCONF)),
]


def _summary(times: list[float], cpu: list[float], counts: list[int]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(sorted(times)[int(len(times) * 0.95) - 1], 1),
        "cpu_p50_ms": round(statistics.median(cpu), 1),
        "queries": max(counts),
    }


def measure(client: Client, urls: list[str], runs: int) -> list[dict[str, float]]:
    """Each URL `runs` times, taking turns (a shared machine's load then weighs on all alike).

    Besides wall-clock time, the CPU time of this process per request: Django's own work (not
    PostgreSQL's), which neighbours on the machine disturb far less.
    """
    times: list[list[float]] = [[] for _ in urls]
    cpu: list[list[float]] = [[] for _ in urls]
    counts: list[list[int]] = [[] for _ in urls]
    for _ in range(runs):
        for i, url in enumerate(urls):
            with CaptureQueriesContext(connection) as queries:
                started, started_cpu = time.perf_counter(), time.process_time()
                response = client.get(url)
                elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
            assert response.status_code == 200, (url, response.status_code)
            times[i].append(elapsed * 1000)
            cpu[i].append(elapsed_cpu * 1000)
            counts[i].append(len(queries.captured_queries))
    return [_summary(t, c, n) for t, c, n in zip(times, cpu, counts, strict=True)]


def profile(client: Client, url: str, runs: int, top: int) -> None:
    """cProfile of `runs` requests of the page (a separate pass: the timings above run unprofiled)."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        client.get(url)
    profiler.disable()
    for order in ("cumulative", "tottime"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(top)
        print(f"--- {url}, {runs} requests, by {order}\n{text.getvalue()}", file=sys.stderr)


def view_queries(client: Client, url: str, baseline: set[str]) -> list[tuple[str, object]]:
    """The SQL the page's view ran (session/user/team look-ups of every request left out)."""
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return [(q["sql"], None) for q in queries.captured_queries if q["sql"] not in baseline]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--certificates", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--pages", default="dashboard,servers,certificates", help="comma-separated subset")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N of a cProfile per page")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        print("set DATABASE_URL to a PostgreSQL database", file=sys.stderr)
        return 2
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _team, user = populate(args.servers, max(args.certificates, args.servers))
    client = Client()
    client.force_login(user)
    with override_settings(ROOT_URLCONF=__name__):
        REPLAY["none"] = []
        with CaptureQueriesContext(connection) as q:
            client.get("/__bench__/none/")
        baseline = {item["sql"] for item in q.captured_queries}
        pages = {
            "dashboard": reverse("dashboard"),
            "servers": reverse("server_list"),
            "certificates": reverse("certificate_list"),
        }
        pages = {name: pages[name] for name in args.pages.split(",")}
        out: dict[str, object] = {
            "team_servers": args.servers,
            "team_certificates": max(args.certificates, args.servers),
            "runs": args.runs,
            "database": "postgresql",
            "load_average": os.getloadavg()[0],
        }
        for name, url in pages.items():
            REPLAY[name] = view_queries(client, url, baseline)
            client.get(url)  # warm
            client.get(f"/__bench__/{name}/")
            project, bare_view = measure(client, [url, f"/__bench__/{name}/"], args.runs)
            if args.profile:
                profile(client, url, args.runs, args.profile)
            out[name] = {
                "project": project,
                "bare": bare_view,
                "ratio": round(bare_view["p50_ms"] / project["p50_ms"], 2),
            }
    out["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
