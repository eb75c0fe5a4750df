"""Rows as the scanner would leave them: servers with current results and open findings."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from django.utils import timezone

from keychest.accounts.models import Team
from monitors.models import Finding, ScanResult, Server

LE = "CN=R11,O=Let's Encrypt,C=US"
CLOUDFLARE = "CN=Cloudflare Inc ECC CA-3,O=Cloudflare\\, Inc.,C=US"
DIGICERT = "CN=DigiCert Global G2 TLS RSA SHA256 2020 CA1,O=DigiCert Inc,C=US"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def server_with_certificate(
    team: Team,
    host: str,
    *,
    expires_in: timedelta,
    lifetime: timedelta = timedelta(days=90),
    issuer: str = LE,
    addresses: tuple[str, ...] = ("192.0.2.1",),
    leaf: str | None = None,
    names: list[str] | None = None,
    now: datetime | None = None,
    port: int = 443,
) -> Server:
    now = now or timezone.now()
    server = Server.objects.create(team=team, host=host, port=port, last_scan_at=now)
    not_after = now + expires_in
    leaf = leaf or sha(f"{host}:{port}:{not_after.isoformat()}")
    for address in addresses:
        ScanResult.objects.create(
            team=team,
            server=server,
            address=address,
            state_digest=sha(f"{leaf}{address}"),
            leaf_sha256=leaf,
            subject=f"CN={host}",
            issuer=issuer,
            names=names or [host],
            not_before=not_after - lifetime,
            not_after=not_after,
            tls_version="TLSv1.3",
            trusted=True,
            first_seen=now - timedelta(days=1),
            last_seen=now,
        )
    return server


def finding(
    server: Server,
    code: str,
    *,
    severity: str = "error",
    message: str = "",
    address: str = "",
    first_seen: datetime | None = None,
) -> Finding:
    now = timezone.now()
    return Finding.objects.create(
        team=server.team,
        server=server,
        code=code,
        severity=severity,
        message=message or code.replace("_", " "),
        address=address,
        first_seen=first_seen or now - timedelta(days=2),
        last_seen=now,
    )
