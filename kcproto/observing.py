"""The network phase of a scan, shared by the SaaS scanner (`monitors.scanning`) and
`keychest-agent`: resolve each target (unless its addresses are known), then probe every address
concurrently, DNS and handshakes under one bound on open connections. Pure protocol code (no
Django); what to probe for (the TLS 1.0/1.1 look, the other key family) is the caller's choice,
per address.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kcproto import netguard, tlsprobe


@dataclass(frozen=True)
class Bounds:
    """Where and how long a scan may look."""

    allow_private: bool
    deadline: float = tlsprobe.DEFAULT_DEADLINE
    connect_timeout: float = tlsprobe.DEFAULT_CONNECT_TIMEOUT
    dns_timeout: float = 5.0
    nameservers: tuple[tuple[str, int], ...] = ()


def _never(_address: str) -> bool:
    return False


@dataclass
class Plan:
    """One target: its addresses when known (a pinned IP, a fresh DNS answer), else resolved now;
    per address, whether to add the TLS 1.0/1.1 look and the other key family's certificate."""

    host: str
    port: int
    protocol: str = "tls"
    addresses: Sequence[str] | None = None
    legacy: Callable[[str], bool] = _never
    alternate: Callable[[str], bool] = _never


@dataclass
class Seen:
    """What the network answered for one plan: the DNS answer (when resolved now) and one probe
    per address, in the order of `addresses`."""

    resolution: netguard.Resolution | None = None
    addresses: list[str] = field(default_factory=list)
    probes: list[tlsprobe.Probe] = field(default_factory=list)


# A probe's own failure (a bug, never a network answer) as that address's result; None: raise.
OnError = Callable[[Plan, str, Exception], tlsprobe.Probe]


async def observe_all(
    plans: Sequence[Plan], *, bounds: Bounds, concurrency: int, on_error: OnError | None = None
) -> list[Seen]:
    """Resolve and probe every plan concurrently; one `Seen` per plan, in order."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def probe_one(plan: Plan, address: str) -> tlsprobe.Probe:
        legacy, alternate = plan.legacy(address), plan.alternate(address)
        async with gate:
            try:
                return await tlsprobe.probe(
                    address,
                    plan.port,
                    sni=plan.host,
                    protocol=plan.protocol,
                    allow_private=bounds.allow_private,
                    deadline_seconds=bounds.deadline,
                    connect_timeout=bounds.connect_timeout,
                    legacy_probe=legacy,
                    alternate_key=alternate,
                )
            except Exception as exc:
                if on_error is None:
                    raise
                return on_error(plan, address, exc)

    async def one(plan: Plan) -> Seen:
        seen = Seen()
        if plan.addresses is not None:
            seen.addresses = list(plan.addresses)
        else:
            async with gate:
                seen.resolution = await netguard.resolve_async(
                    plan.host,
                    allow_private=bounds.allow_private,
                    timeout=bounds.dns_timeout,
                    nameservers=bounds.nameservers or None,
                )
            seen.addresses = [str(a) for a in seen.resolution.addresses]
        seen.probes = list(await asyncio.gather(*(probe_one(plan, a) for a in seen.addresses)))
        return seen

    return list(await asyncio.gather(*(one(p) for p in plans)))
