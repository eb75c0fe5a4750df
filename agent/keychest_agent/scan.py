"""Scanning a work list with the scanner's own protocol code (kcproto): resolve, probe every
address, and a local verdict for the agent's log. The server does not read that verdict: it
validates the reported chain and derives the findings itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kcproto import agentwire, checks, observing, tlsprobe
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


def _plan(target: agentwire.Target) -> observing.Plan:
    return observing.Plan(
        host=target.host,
        port=target.port,
        protocol=target.protocol,
        addresses=[target.pinned_ip] if target.pinned_ip else None,
        legacy=lambda _address: target.legacy_probe,
        alternate=lambda _address: target.alternate_key,
    )


def _result(target: agentwire.Target, seen: observing.Seen, store: TrustStore) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {
        "target": target.id,
        "scanned_at": now.isoformat(),
        "resolution": agentwire.resolution_to_wire(seen.resolution),
        "probes": [agentwire.probe_to_wire(p) for p in seen.probes],
        "legacy_probed": target.legacy_probe,
        "alternate_probed": target.alternate_key,
        "agent_verdict": {p.address: local_verdict(p, target.host, store, now) for p in seen.probes},
    }


async def scan_targets(
    targets: Sequence[agentwire.Target], *, ca_bundle: str, options: ScanOptions
) -> list[dict[str, Any]]:
    """One result item per target, in the wire format of `POST /api/v1/agent/results`: resolved
    and probed by kcproto.observing, the network loop of the SaaS's own scans."""
    store = trust_store(ca_bundle)
    bounds = observing.Bounds(
        allow_private=True,
        deadline=options.deadline,
        connect_timeout=options.connect_timeout,
        dns_timeout=options.dns_timeout,
        nameservers=options.nameservers,
    )
    seen = await observing.observe_all([_plan(t) for t in targets], bounds=bounds, concurrency=options.concurrency)
    return [_result(t, s, store) for t, s in zip(targets, seen, strict=True)]
