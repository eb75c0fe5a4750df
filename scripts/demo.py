"""`make demo`: a full dashboard with real findings, offline, in about a minute.

Starts the local TLS lab (lab/tls.py: a private PKI and TLS/STARTTLS endpoints on 127.0.0.x),
the lab DNS server (lab/dns.py), the local CT log (lab/ctlog/) and RDAP server (lab/rdap/); creates a demo
account whose team watches the lab servers and domain; runs the scans (and CT ingestion)
through the product's own code; then runs the product (web, worker, beat) until Ctrl-C.

    make demo                      # http://127.0.0.1:8000/ — demo@keychest.test / keychest-demo
    python scripts/demo.py --no-serve   # build the demo data, print a JSON summary, stop

The demo uses its own SQLite database (var/demo.sqlite3, recreated each run) unless
KEYCHEST_DEMO_DATABASE_URL is set. Nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE))

DEMO_EMAIL = "demo@keychest.test"
DEMO_PASSWORD = "keychest-demo"  # noqa: S105 - a published demo account on a local database
DEMO_DOMAIN = "demo.keychest.test"


@dataclass
class Scenario:
    """One lab server of the demo: what it serves and what the dashboard should show for it."""

    label: str
    issuer: str  # "le", "managed", "other", "self"
    days_left: float
    lifetime: int = 90
    names: list[str] | None = None  # names on the certificate (default: the host itself)
    intermediates: bool = True
    addresses: tuple[str, ...] = ("127.0.0.1",)
    kind: str = "tls"  # "tls", "smtp", "closed", "nodns", "twin"
    expect: str = ""


SCENARIOS = [
    Scenario("www", "le", 4, expect="expires within 7 days; renewal overdue"),
    Scenario("shop", "le", 12, expect="8-14 days"),
    Scenario("api", "le", 19, expect="15-21 days"),
    Scenario("blog", "le", 26, expect="22-28 days"),
    Scenario("app", "le", 70, expect="fine"),
    Scenario("cdn", "managed", 40, expect="CDN-managed"),
    Scenario("static", "managed", 150, lifetime=365, expect="CDN-managed, later this year"),
    Scenario("intranet", "other", 300, lifetime=398, expect="long-lived, other CA"),
    Scenario("vpn", "other", 200, lifetime=365, expect="other CA"),
    Scenario("old", "le", -3, expect="expired"),
    Scenario("wrong", "le", 50, names=["elsewhere.example"], expect="hostname mismatch"),
    Scenario("appliance", "self", 300, lifetime=365, expect="self-signed"),
    Scenario("partial", "le", 45, intermediates=False, expect="incomplete chain"),
    Scenario(
        "twin", "le", 30, addresses=("127.0.0.2", "127.0.0.3"), kind="twin", expect="different certificates per address"
    ),
    Scenario("mail", "le", 33, kind="smtp", expect="SMTP STARTTLS"),
    Scenario("down", "le", 0, kind="closed", expect="connection refused"),
    Scenario("gone", "le", 0, kind="nodns", expect="DNS failure"),
]


@dataclass
class DemoLab:
    """The running lab pieces and the targets (host:port) the demo team watches."""

    lab: Any
    dns: Any
    ctlog: Any = None
    rdap: Any = None
    targets: list[tuple[str, str]] = field(default_factory=list)  # (host:port, protocol)
    ct_issuances: int = 0

    def stop(self) -> None:
        for part in (self.rdap, self.ctlog, self.dns, self.lab):
            if part is not None:
                try:
                    part.stop()
                except Exception as error:  # noqa: BLE001 - stopping is best effort
                    print(f"stopping {type(part).__name__}: {error}", file=sys.stderr)


def start_lab() -> DemoLab:
    """Serve every scenario on 127.0.0.x and answer DNS for the demo names."""
    from lab.dns import LabDNS
    from lab.pki import self_signed
    from lab.tls import Lab

    lab = Lab()
    dns = LabDNS().start()
    # Lab intermediates named after the issuer kinds the calendar shows (clearly lab CAs).
    cas = {
        "le": lab.root.intermediate("Let's Encrypt R11 (KeyChest lab)"),
        "managed": lab.root.intermediate("Cloudflare ECC CA-3 (KeyChest lab)"),
        "other": lab.intermediate,
    }
    now = dt.datetime.now(dt.UTC)
    running = DemoLab(lab=lab, dns=dns)

    def leaf(s: Scenario, host: str) -> Any:
        names = s.names or [host]
        not_after = now + dt.timedelta(days=s.days_left)
        if s.issuer == "self":
            return self_signed(names, days=s.lifetime)
        return cas[s.issuer].issue(names, not_before=not_after - dt.timedelta(days=s.lifetime), not_after=not_after)

    for s in SCENARIOS:
        host = f"{s.label}.{DEMO_DOMAIN}"
        if s.kind == "nodns":
            running.targets.append((f"{host}:443", "tls"))
            continue
        dns.set(host, list(s.addresses))
        if s.kind == "closed":
            running.targets.append((f"{host}:{lab.closed_port()}", "tls"))
            continue
        if s.kind == "smtp":
            endpoint = lab.starttls("smtp", leaf(s, host), hosts=list(s.addresses))
            running.targets.append((f"{host}:{endpoint.port}", "smtp"))
            continue
        endpoint = lab.tls(leaf(s, host), hosts=list(s.addresses), include_intermediates=s.intermediates)
        if s.kind == "twin":
            # The second address still serves last month's certificate: a half-finished deployment.
            older = Scenario(s.label, s.issuer, s.days_left - 20, s.lifetime)
            endpoint.serve(leaf(older, host), host=s.addresses[1])
        running.targets.append((f"{host}:{endpoint.port}", "tls"))
    return running


def start_ctlog(running: DemoLab, listing: Path) -> None:
    """The local CT log with some of the demo domain's history: a renewal of www that was never
    deployed, an old expired certificate, and hosts only CT knows about (sub-domain discovery)."""
    from lab.ctlog.server import LocalCTLog, write_log_list

    log = LocalCTLog(description="KeyChest demo CT log").start()
    now = dt.datetime.now(dt.UTC)
    history = [("www", dt.timedelta(hours=2)), ("shop", dt.timedelta(days=200))]
    history += [(label, dt.timedelta(days=10)) for label in ("staging", "beta", "status")]
    for label, age in history:
        log.add_issuance(log.issue([f"{label}.{DEMO_DOMAIN}"], not_before=now - age))
    running.ct_issuances = len(history)
    log.publish()
    running.ctlog = log
    # The product reads its CT logs from this list (KEYCHEST_CT_LOG_LIST).
    write_log_list(listing, [log])


def start_rdap(running: DemoLab, bootstrap: Path) -> None:
    """The local RDAP server: the demo domain's registration expires in 25 days (a 28-day warning)."""
    from lab.rdap.server import LocalRDAP

    server = LocalRDAP().start()
    registered = DEMO_DOMAIN.split(".", 1)[1]  # "keychest.test", as the Public Suffix List reads it
    server.register(registered, expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=25, hours=6))
    running.rdap = server
    # The product finds its RDAP servers through this bootstrap (KEYCHEST_RDAP_BOOTSTRAP).
    server.write_bootstrap(bootstrap)


def _check_registrations(running: DemoLab) -> dict[str, Any]:
    """Look the demo domains' registrations up over RDAP through the product's own code."""
    from monitors.registrations import registration_check_now, registrations_sync

    if running.rdap is None:
        return {}
    registrations_sync()
    run = registration_check_now(name=DEMO_DOMAIN)
    return {d["domain"]: {"expires_at": d["expires_at"], "days_left": d["days_left"]} for d in run.domains}


def build(running: DemoLab) -> dict[str, Any]:
    """Create the demo account and team, watch the lab, scan (and ingest CT); returns a summary."""
    from allauth.account.models import EmailAddress

    from keychest.accounts.models import User
    from keychest.accounts.services import personal_team_ensure
    from monitors import services
    from monitors.models import Finding, Server
    from monitors.scanning import scan_server_ids

    user = User.objects.filter(email=DEMO_EMAIL).first()
    if user is None:
        user = User.objects.create_user(email=DEMO_EMAIL, password=DEMO_PASSWORD, timezone="Europe/London")
        EmailAddress.objects.create(user=user, email=DEMO_EMAIL, verified=True, primary=True)
    team = personal_team_ensure(user=user)
    team.name = "Demo team"
    team.save(update_fields=["name"])
    bundle = services.ca_bundle_create(team=team, name="KeyChest lab root", pem=running.lab.root_pem)
    ids = []
    for target, protocol in running.targets:
        try:
            server = services.server_enrol(
                team=team, host=target, protocol=protocol, ca_bundle=bundle, added_by=user, tags=["demo"]
            )
        except services.AlreadyWatched as already:
            server = already.server
        ids.append(server.pk)
    ct_summary = _ingest_ct(running, team, user)
    started = time.monotonic()
    summary = scan_server_ids(ids, force_dns=True)
    findings: dict[str, int] = {}
    for code in Finding.objects.for_team(team).filter(resolved_at=None).values_list("code", flat=True):
        findings[code] = findings.get(code, 0) + 1
    return {
        "email": DEMO_EMAIL,
        "password": DEMO_PASSWORD,
        "team": team.name,
        "servers": Server.objects.for_team(team).filter(removed_at=None).count(),
        "scan_seconds": round(time.monotonic() - started, 2),
        "scan": summary.as_dict(),
        "open_findings": dict(sorted(findings.items())),
        "ct": ct_summary,
        "registrations": _check_registrations(running),
    }


def _ingest_ct(running: DemoLab, team: Any, user: Any) -> dict[str, Any]:
    """Watch the demo domain, then read the local CT log from its start through the product's ingestion."""
    from certificates.ingest import ct_ingest_round
    from certificates.logs import ct_log_reset, ct_logs_sync
    from monitors.domains import domain_watch
    from monitors.models import DiscoveredHost

    watched = domain_watch(team=team, domain=DEMO_DOMAIN, include_subdomains=True, auto_watch=False, added_by=user)
    logs = ct_logs_sync()
    for log in logs:
        ct_log_reset(log=log, start_index=0)
    rounds = ct_ingest_round(max_seconds=30)
    return {
        "watched_domain": watched.domain,
        "issuances_logged": running.ct_issuances,
        "entries_read": sum(r.entries for r in rounds),
        "errors": [r.error for r in rounds if r.error],
        "discovered_hosts": sorted(DiscoveredHost.objects.for_team(team).values_list("name", flat=True)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-serve", action="store_true", help="build the demo data, print JSON, stop")
    args = parser.parse_args()
    os.chdir(BASE)
    os.environ.setdefault("DEBUG", "1")
    database = os.environ.get("KEYCHEST_DEMO_DATABASE_URL")
    if not database:
        var = BASE / "var"
        var.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            (var / f"demo.sqlite3{suffix}").unlink(missing_ok=True)
        database = f"sqlite:///{var / 'demo.sqlite3'}"
    os.environ["DATABASE_URL"] = database
    print("Starting the lab (TLS servers, DNS, CT log, RDAP) on 127.0.0.x ...", flush=True)
    running = start_lab()
    listing = BASE / "var" / "demo-ct-log-list.json"
    start_ctlog(running, listing)
    bootstrap = BASE / "var" / "demo-rdap-bootstrap.json"
    start_rdap(running, bootstrap)
    os.environ["KEYCHEST_CT_LOG_LIST"] = str(listing)
    os.environ["KEYCHEST_RDAP_BOOTSTRAP"] = str(bootstrap)
    os.environ["KEYCHEST_ALLOW_PRIVATE_TARGETS"] = "1"
    os.environ["KEYCHEST_DNS_NAMESERVERS"] = running.dns.nameserver
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keychest.settings")
    import django
    from django.core.management import call_command

    django.setup()
    try:
        call_command("migrate", verbosity=0)
        summary = build(running)
        print(json.dumps(summary, indent=2, default=str), flush=True)
        if args.no_serve:
            return 0
        # run_all.py prints the one greeting (sign in as the demo account, not "sign up there").
        os.environ["KEYCHEST_RUN_SIGN_IN_AS"] = f"{DEMO_EMAIL} / {DEMO_PASSWORD}"
        product = subprocess.Popen([sys.executable, str(BASE / "scripts" / "run_all.py")])  # noqa: S603
        # Ctrl-C reaches both through the terminal; a SIGTERM to the demo alone is passed on, so
        # the web server, worker and beat never outlive the lab they scan.
        signal.signal(signal.SIGTERM, lambda *_: product.terminate())
        while True:
            try:
                return product.wait()
            except KeyboardInterrupt:
                product.terminate()
    finally:
        running.stop()


if __name__ == "__main__":
    sys.exit(main())
