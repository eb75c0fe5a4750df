"""Benchmark: `GET /api/v1/metrics` for a team with 10,000 servers, beside a bare view.

The team is the dashboard benchmark's (bench/dashboard.py: 10,000 servers, 12,000 addresses
serving certificates, 500 open findings), plus ARI windows for half the certificates, 200
failing addresses with an older success, and 50 watched registered domains. The project path
is the whole request with a `read` key (authentication, throttling, six queries,
prometheus_client's exposition); the bare view runs the same SQL and writes the same
certificate and address samples with plain f-strings and no label escaping: the floor of
"read these rows and print them". Target: the project answers in under a second.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kc_bench_dashboard flock /tmp/kc-bench.lock \\
        .venv/bin/python bench/metrics.py [--servers 10000] [--runs 15] [--profile 30]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import include, path

from bench.dashboard import measure, populate, profile

MARKER = "bench-metrics-extras"
REPLAY: list[str] = []


def add_extras(team: object) -> None:
    """ARI windows, failing addresses and registrations, once per database."""
    from certificates.models import Certificate, RenewalInfo
    from monitors.models import DomainRegistration, RegistrationWatch, ScanResult

    if DomainRegistration.objects.filter(domain=f"{MARKER}-0.example").exists():
        return
    now = datetime.now(UTC)
    current = ScanResult.objects.filter(team=team, current=True).order_by("id")
    shas = list(current.values_list("leaf_sha256", flat=True).distinct()[::2])
    certs = Certificate.objects.filter(sha256__in=shas).values_list("id", flat=True)
    RenewalInfo.objects.bulk_create(
        [RenewalInfo(certificate_id=c, window_start=now, window_end=now + timedelta(days=2)) for c in certs],
        batch_size=2000,
    )
    for result in current[:200]:
        ScanResult.objects.filter(pk=result.pk).update(current=False)
        ScanResult.objects.create(
            team=result.team, server_id=result.server_id, address=result.address, state_digest="err",
            error_code="connect_failed", first_seen=now, last_seen=now,
        )  # fmt: skip
    for i in range(50):
        registration = DomainRegistration.objects.create(
            domain=f"{MARKER}-{i}.example", expires_at=now + timedelta(days=i)
        )
        RegistrationWatch.objects.create(team=team, registration=registration)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def bare(request: HttpRequest) -> HttpResponse:
    """The same SQL; the certificate and address samples written by hand, nothing escaped."""
    with connection.cursor() as cursor:
        fetched = []
        for sql in REPLAY:
            cursor.execute(sql)
            fetched.append(cursor.fetchall())
    servers = {row[0]: f"{row[1]}:{row[2]}" for row in fetched[0]}
    now = datetime.now(UTC).timestamp()
    lines = []
    for server_id, address, _alt, error, subject, issuer, nb, na, last_seen, _sha in fetched[1]:
        instance = servers[server_id]
        labels = f'instance="{instance}",address="{address}"'
        lines.append(f"keychest_probe_success{{{labels}}} {0 if error else 1}\n")
        if error:
            continue
        lines.append(f"keychest_last_successful_scan_timestamp_seconds{{{labels}}} {last_seen.timestamp()}\n")
        cert = f'{labels},cn="{subject[3:]}",issuer_cn="{issuer[3:20]}",serial_no=""'
        lines.append(f"keychest_cert_not_after_timestamp_seconds{{{cert}}} {na.timestamp()}\n")
        lines.append(f"keychest_cert_not_before_timestamp_seconds{{{cert}}} {nb.timestamp()}\n")
        lines.append(f"keychest_cert_expires_in_seconds{{{cert}}} {na.timestamp() - now}\n")
    return HttpResponse("".join(lines), content_type="text/plain; version=0.0.4")


urlpatterns = [path("__bench__/metrics", bare), path("", include(settings.ROOT_URLCONF))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        print("set DATABASE_URL to a PostgreSQL database", file=sys.stderr)
        return 2
    from django.core.management import call_command

    from api.models import Scope
    from api.services import apikey_create

    call_command("migrate", verbosity=0)
    team, user = populate(args.servers, args.servers)
    add_extras(team)
    key = apikey_create(team=team, user=user, name="bench metrics", scopes=[Scope.READ]).secret  # type: ignore[arg-type]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    url = "/api/v1/metrics"
    with override_settings(ROOT_URLCONF=__name__, KEYCHEST_API_RATE_PER_KEY=100_000, KEYCHEST_API_RATE_PER_IP=100_000):
        with CaptureQueriesContext(connection) as queries:
            body = client.get(url).content
        # The view's own reads (servers, results, certificates, ...), without the key look-up.
        REPLAY.extend(
            q["sql"] for q in queries.captured_queries if "monitors_" in q["sql"] or "certificates_" in q["sql"]
        )
        client.get("/__bench__/metrics")
        project, bare_view = measure(client, [url, "/__bench__/metrics"], args.runs)
        if args.profile:
            profile(client, url, args.runs, args.profile)
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    out = {
        "team_servers": args.servers,
        "samples": samples,
        "bytes": len(body),
        "runs": args.runs,
        "load_average": os.getloadavg()[0],
        "project": project,
        "bare": bare_view,
        "ratio": round(bare_view["p50_ms"] / project["p50_ms"], 2),
        "under_a_second": project["p50_ms"] < 1000,
    }
    out["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
