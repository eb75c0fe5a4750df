"""One-off checks of any host[:port] without storing anything into any team.

Used by `manage.py spotcheck` and the public spot-check page: the same probes, validation and
check sequence as a team scan, returned as one JSON-able dict.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from typing import Any

from django.utils import timezone

from certificates.ari import windows_for
from kcproto import checks, hsts, netguard, tlsprobe
from kcproto.checks import FindingSpec
from kcproto.targets import PROTOCOL_PORT_DEFAULTS, InvalidTarget, parse_protocol, parse_target
from kcproto.validation import trust_store, validate
from monitors.scanning import ScanConfig

SEVERITY_ORDER = {"critical": 0, "error": 1, "warning": 2, "info": 3}


def _finding(spec: FindingSpec) -> dict[str, Any]:
    return {"code": spec.code, "severity": spec.severity, "message": spec.message, "address": spec.address}


def _cert(parsed: Any) -> dict[str, Any]:
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


def spotcheck(
    *,
    target: str,
    ip: str | None = None,
    protocol: str | None = None,
    ca_pem: str = "",
    config: ScanConfig | None = None,
    now: datetime | None = None,
    check_hsts: bool | None = None,
) -> dict[str, Any]:
    """Check `target` (host[:port]) now. Raises InvalidTarget for an unreadable target.

    HSTS is asked for on implicit TLS on an HTTP port (`hsts.HTTP_PORTS`), or on any TLS port
    with `check_hsts=True`; `check_hsts=False` never sends HTTP."""
    config = config or ScanConfig.from_settings()
    now = now or timezone.now()
    host, port = parse_target(target)
    if port is None:
        port = PROTOCOL_PORT_DEFAULTS.get((protocol or "tls").lower(), 443)
    proto = parse_protocol(protocol, port)
    specs: list[FindingSpec] = []
    dns: dict[str, Any] = {"addresses": [], "refused": [], "error": ""}
    if ip:
        parsed_ip = netguard.parse_ip_literal(ip)
        if parsed_ip is None:
            raise InvalidTarget(f"{ip!r} is not an IP address")
        addresses = [str(parsed_ip)]
    else:
        resolution = netguard.resolve(
            host, allow_private=config.allow_private, timeout=config.dns_timeout, nameservers=config.nameservers or None
        )
        addresses = [str(a) for a in resolution.addresses]
        dns = {"addresses": addresses, "refused": [list(r) for r in resolution.refused], "error": resolution.error}
        for address, reason in resolution.refused:
            specs.append(FindingSpec("target_refused", f"{address} is not a public address ({reason})", address))
        if not addresses and not resolution.refused:
            if resolution.error and resolution.error != "no_answer":
                specs.append(FindingSpec("dns_failure", f"{host} does not resolve ({resolution.error})"))
            else:
                specs.append(FindingSpec("no_addresses", f"{host} has no A or AAAA records"))

    async def run() -> list[tlsprobe.Probe]:
        return list(
            await asyncio.gather(
                *(
                    tlsprobe.probe(
                        a,
                        port,
                        sni=host,
                        protocol=proto,
                        allow_private=config.allow_private,
                        deadline_seconds=config.deadline,
                        connect_timeout=config.connect_timeout,
                        legacy_probe=config.legacy_probe,
                        alternate_key=config.alternate_key,
                    )
                    for a in addresses
                )
            )
        )

    probes = tlsprobe.run_sync(run()) if addresses else []
    hsts_by_address: dict[str, hsts.Hsts] = {}
    wants_hsts = proto == "tls" and (check_hsts if check_hsts is not None else port in hsts.HTTP_PORTS)
    answered = [p.address for p in probes if p.ok]
    if wants_hsts and answered:

        async def ask() -> list[hsts.Hsts]:
            return list(
                await asyncio.gather(
                    *(hsts.hsts_check(a, port, host=host, allow_private=config.allow_private) for a in answered)
                )
            )

        hsts_by_address = dict(zip(answered, tlsprobe.run_sync(ask()), strict=True))
    store = trust_store(ca_pem)
    per_address: list[dict[str, Any]] = []
    leaf_by_address: dict[str, str] = {}
    for probe in probes:
        validation = validate(probe.chain_der, host, store, now=now) if probe.ok and probe.chain_der else None
        # The CA's renewal window (ARI), when the store knows it for this certificate.
        ari = windows_for([validation.leaf.sha256]) if validation and validation.leaf else {}
        found = checks.address_checks(
            probe,
            validation,
            host=host,
            now=now,
            ari_window=ari.get(validation.leaf.sha256) if validation and validation.leaf else None,
        )
        # The other key family's certificate, when the address serves one side by side.
        second = validate(probe.alt_chain_der, host, store, now=now) if probe.ok and probe.alt_chain_der else None
        if second is not None and second.leaf is not None:
            alt_found = checks.address_checks(
                dataclasses.replace(probe, legacy_versions=[], chain_truncated=False), second, host=host, now=now
            )
            found = checks.merge_alternate(found, alt_found, second.leaf.key_type)
        header = hsts_by_address.get(probe.address)
        if header is not None and not header.error and not header.present:
            found.append(
                FindingSpec("hsts_missing", f"HTTP {header.status} without Strict-Transport-Security", probe.address)
            )
        specs.extend(found)
        leaf_by_address[probe.address] = validation.leaf.sha256 if validation and validation.leaf else ""
        per_address.append(
            {
                "ip": probe.address,
                "error_code": probe.error_code,
                "error_message": probe.error_message,
                "tls_version": probe.tls_version,
                "cipher": probe.cipher,
                "legacy_tls": probe.legacy_versions,
                "trusted": validation.trusted if validation else None,
                "chain": [_cert(p) for p in validation.chain] if validation else [],
                "alternate_chain": [_cert(p) for p in second.chain] if second is not None and second.leaf else [],
                "findings": [_finding(s) for s in found],
                # Whether current browsers and OpenSSL refuse this address (docs/scanner.md).
                "clients_refuse": checks.clients_refuse(found),
                "hsts": header.as_dict() if header is not None else None,
                "elapsed_ms": probe.elapsed_ms,
            }
        )
    disagreement = checks.ips_disagree(leaf_by_address)
    if disagreement is not None:
        specs.append(disagreement)
    specs.sort(key=lambda s: (SEVERITY_ORDER[s.severity], s.code, s.address))
    return {
        "host": host,
        "port": port,
        "protocol": proto,
        "checked_at": now.isoformat(),
        "dns": dns,
        "addresses": per_address,
        "findings": [_finding(s) for s in specs],
    }
