"""Scanning a work list with the scanner's own protocol code (kcproto): resolve, probe every
address, and a local verdict for the agent's log. The server does not read that verdict: it
validates the reported chain and derives the findings itself."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kcproto import agentwire, checks, netguard, tlsprobe
from kcproto.validation import TrustStore, trust_store, validate


@dataclass(frozen=True)
class ScanOptions:
    """Bounds of one scan pass (the agent scans its own network: private addresses are the point)."""

    deadline: float = tlsprobe.DEFAULT_DEADLINE
    connect_timeout: float = tlsprobe.DEFAULT_CONNECT_TIMEOUT
    dns_timeout: float = 5.0
    concurrency: int = 50
    nameservers: tuple[tuple[str, int], ...] = ()
    # Connection attempts per second across all the ranges the agent sweeps (each range also
    # keeps its own rate, from the server).
    sweep_rate: float = 50.0


def local_verdict(probe: tlsprobe.Probe, host: str, store: TrustStore, now: dt.datetime) -> dict[str, Any]:
    """What the agent itself concludes (for its log and the operator); advisory only."""
    validation = validate(probe.chain_der, host, store, now=now) if probe.ok and probe.chain_der else None
    specs = checks.address_checks(probe, validation, host=host, now=now)
    return {"trusted": bool(validation and validation.trusted), "findings": sorted({s.code for s in specs})}


async def _scan_target(
    target: agentwire.Target, options: ScanOptions, gate: asyncio.Semaphore, store: TrustStore
) -> dict[str, Any]:
    resolution: netguard.Resolution | None = None
    if target.pinned_ip:
        addresses = [target.pinned_ip]
    else:
        async with gate:
            resolution = await netguard.resolve_async(
                target.host,
                allow_private=True,
                timeout=options.dns_timeout,
                nameservers=options.nameservers or None,
            )
        addresses = [str(a) for a in resolution.addresses]

    async def one(address: str) -> tlsprobe.Probe:
        async with gate:
            return await tlsprobe.probe(
                address,
                target.port,
                sni=target.host,
                protocol=target.protocol,
                allow_private=True,
                deadline_seconds=options.deadline,
                connect_timeout=options.connect_timeout,
                legacy_probe=target.legacy_probe,
                alternate_key=target.alternate_key,
            )

    probes = list(await asyncio.gather(*(one(a) for a in addresses)))
    now = dt.datetime.now(dt.UTC)
    return {
        "target": target.id,
        "scanned_at": now.isoformat(),
        "resolution": agentwire.resolution_to_wire(resolution),
        "probes": [agentwire.probe_to_wire(p) for p in probes],
        "legacy_probed": target.legacy_probe,
        "alternate_probed": target.alternate_key,
        "agent_verdict": {p.address: local_verdict(p, target.host, store, now) for p in probes},
    }


async def scan_targets(
    targets: Sequence[agentwire.Target], *, ca_bundle: str, options: ScanOptions
) -> list[dict[str, Any]]:
    """One result item per target, in the wire format of `POST /api/v1/agent/results`."""
    gate = asyncio.Semaphore(max(1, options.concurrency))
    store = trust_store(ca_bundle)
    return list(await asyncio.gather(*(_scan_target(t, options, gate, store) for t in targets)))
