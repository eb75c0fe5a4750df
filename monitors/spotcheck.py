"""One-off checks of any host[:port] without storing anything into any team.

The spot check is the scan pipeline without storing (issue 20): the same network phase
(`monitors.scanning.observe`), validation and judging (`monitors.scan_storing`) run on an unsaved
server, and the answer is a typed `SpotCheckResult`. Used by `manage.py spotcheck`, the public
spot-check page (which keeps `as_dict()` with the check's shareable link) and the canary.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from kcproto import checks, hsts, netguard, tlsprobe
from kcproto.checks import FindingSpec
from kcproto.targets import PROTOCOL_PORT_DEFAULTS, InvalidTarget, parse_protocol, parse_target
from kcproto.validation import Validation
from kcproto.x509 import ParsedCertificate
from monitors.models import Server, TeamCABundle
from monitors.scan_findings import dns_specs
from monitors.scan_pass import ScanPass
from monitors.scan_storing import address_specs, check_address, resolution_apply
from monitors.scanning import ScanConfig, observe

SEVERITY_ORDER = {"critical": 0, "error": 1, "warning": 2, "info": 3}


def finding_dict(spec: FindingSpec) -> dict[str, Any]:
    return {"code": spec.code, "severity": spec.severity, "message": spec.message, "address": spec.address}


def certificate_dict(parsed: ParsedCertificate) -> dict[str, Any]:
    return {
        "subject": parsed.subject,
        "issuer": parsed.issuer,
        "names": list(parsed.names + parsed.ip_addresses)[:100],
        "not_before": parsed.not_before.isoformat(),
        "not_after": parsed.not_after.isoformat(),
        "sha256": parsed.sha256,
        "key": f"{parsed.key_type} {parsed.key_size}",
        "signature_algorithm": parsed.signature_algorithm,
        "is_ca": parsed.is_ca,
    }


@dataclass(frozen=True)
class SpotDns:
    """The DNS answer (empty when an address was given)."""

    addresses: list[str] = field(default_factory=list)
    refused: list[list[str]] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class SpotAddress:
    """What one address served and what is wrong with it."""

    probe: tlsprobe.Probe
    validation: Validation | None
    alternate: Validation | None
    findings: list[FindingSpec]
    hsts: hsts.Hsts | None = None

    @property
    def leaf_sha256(self) -> str:
        return self.validation.leaf.sha256 if self.validation and self.validation.leaf else ""

    def as_dict(self) -> dict[str, Any]:
        probe, validation, alternate = self.probe, self.validation, self.alternate
        return {
            "ip": probe.address,
            "error_code": probe.error_code,
            "error_message": probe.error_message,
            "tls_version": probe.tls_version,
            "cipher": probe.cipher,
            "legacy_tls": probe.legacy_versions,
            "trusted": validation.trusted if validation else None,
            "chain": [certificate_dict(p) for p in validation.chain] if validation else [],
            "alternate_chain": [certificate_dict(p) for p in alternate.chain] if alternate and alternate.leaf else [],
            "findings": [finding_dict(s) for s in self.findings],
            # Whether current browsers and OpenSSL refuse this address (docs/scanner.md).
            "clients_refuse": checks.clients_refuse(self.findings),
            "hsts": self.hsts.as_dict() if self.hsts is not None else None,
            "elapsed_ms": probe.elapsed_ms,
        }


@dataclass(frozen=True)
class SpotCheckResult:
    """A spot check's answer; `as_dict()` is the JSON the result page and `--json` show."""

    host: str
    port: int
    protocol: str
    checked_at: datetime
    dns: SpotDns
    addresses: list[SpotAddress]
    findings: list[FindingSpec]  # every finding, gravest first

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "checked_at": self.checked_at.isoformat(),
            "dns": {"addresses": self.dns.addresses, "refused": self.dns.refused, "error": self.dns.error},
            "addresses": [a.as_dict() for a in self.addresses],
            "findings": [finding_dict(s) for s in self.findings],
        }


def spotcheck(
    *,
    target: str,
    ip: str | None = None,
    protocol: str | None = None,
    ca_pem: str = "",
    config: ScanConfig | None = None,
    now: datetime | None = None,
    check_hsts: bool | None = None,
) -> SpotCheckResult:
    """Check `target` (host[:port]) now. Raises InvalidTarget for an unreadable target.

    HSTS is asked for on implicit TLS on an HTTP port (`hsts.HTTP_PORTS`), or on any TLS port
    with `check_hsts=True`; `check_hsts=False` never sends HTTP."""
    config = config or ScanConfig.from_settings()
    now = now or timezone.now()
    server = _unsaved_server(target, ip, protocol, ca_pem)
    observed = observe([server], config=config, now=now, force_dns=True)[server.pk]
    dns = SpotDns()
    if observed.resolution is not None:
        resolution_apply(server, observed.resolution, now)
        dns = SpotDns(list(server.dns_addresses), [list(r) for r in server.dns_refused], observed.resolution.error)
    run = ScanPass([server], now)
    checked = [check_address(server, probe, run) for probe in observed.probes]
    wants_hsts = server.protocol == "tls" and (check_hsts if check_hsts is not None else server.port in hsts.HTTP_PORTS)
    headers = _hsts(server, [c.probe.address for c in checked if c.probe.ok], config) if wants_hsts else {}
    addresses = [
        SpotAddress(
            c.probe,
            c.validation,
            c.alternate,
            address_specs(server, c, run, now) + _hsts_specs(headers.get(c.probe.address), c.probe.address),
            headers.get(c.probe.address),
        )
        for c in checked
    ]
    specs = (dns_specs(server) if not server.pinned_ip else []) + [s for a in addresses for s in a.findings]
    disagreement = checks.ips_disagree({a.probe.address: a.leaf_sha256 for a in addresses})
    specs += [disagreement] if disagreement else []
    specs.sort(key=lambda s: (SEVERITY_ORDER[s.severity], s.code, s.address))
    return SpotCheckResult(server.host, server.port, server.protocol, now, dns, addresses, specs)


def _unsaved_server(target: str, ip: str | None, protocol: str | None, ca_pem: str) -> Server:
    """The target as a server row that is never saved: the scan pipeline's input."""
    host, port = parse_target(target)
    if port is None:
        port = PROTOCOL_PORT_DEFAULTS.get((protocol or "tls").lower(), 443)
    pinned = None
    if ip:
        parsed_ip = netguard.parse_ip_literal(ip)
        if parsed_ip is None:
            raise InvalidTarget(f"{ip!r} is not an IP address")
        pinned = str(parsed_ip)
    server = Server(host=host, port=port, protocol=parse_protocol(protocol, port), pinned_ip=pinned)
    server.ca_bundle = TeamCABundle(pem=ca_pem) if ca_pem else None
    return server


def _hsts(server: Server, answered: list[str], config: ScanConfig) -> dict[str, hsts.Hsts]:
    if not answered:
        return {}
    budget = min(hsts.DEADLINE_SECONDS, config.deadline)

    async def ask() -> list[hsts.Hsts]:
        return list(
            await asyncio.gather(
                *(
                    hsts.hsts_check(
                        a, server.port, host=server.host, allow_private=config.allow_private, deadline_seconds=budget
                    )
                    for a in answered
                )
            )
        )

    return dict(zip(answered, tlsprobe.run_sync(ask()), strict=True))


def _hsts_specs(header: hsts.Hsts | None, address: str) -> list[FindingSpec]:
    if header is None or header.error or header.present:
        return []
    return [FindingSpec("hsts_missing", f"HTTP {header.status} without Strict-Transport-Security", address)]
