"""Sweeping an IP range for TLS services, politely. Pure protocol code (no Django), shared by the
server's discovery and `keychest-agent`.

Every connection attempt waits for every rate limiter it is given (a per-range one and a global
one), the (address, port) pairs are visited in a shuffled order, and each address is first asked
without SNI; when the certificate names one of the team's watched names, that name is asked too
(a server with several certificates answers by SNI).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kcproto import agentwire, tlsprobe
from kcproto.names import name_matches
from kcproto.targets import default_protocol
from kcproto.x509 import CertificateParseError, parse_certificate

MAX_RANGE_ADDRESSES = 1024  # a /22 of IPv4
MAX_PORTS = 20
MAX_NAMES_PER_SERVICE = 3
# Codes of a port where something answered but no TLS service came out of it.
CLOSED = {"connect_failed", "timeout", "target_refused"}


class RateLimiter:
    """At most `rate` starts per second, spaced evenly (a leaky bucket without bursts)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()
        self.starts: list[float] = []

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
            self.starts.append(start)
        delay = start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass
class Service:
    """A TLS service found at address:port (asked without SNI, or with `sni`)."""

    address: str
    port: int
    protocol: str
    sni: str
    probe: tlsprobe.Probe
    names: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        # The leaf is all the server keeps of a found service: a /22 report stays small.
        leaf_only = dataclasses.replace(self.probe, chain_der=self.probe.chain_der[:1], alt_chain_der=[])
        return {
            "address": self.address,
            "port": self.port,
            "protocol": self.protocol,
            "sni": self.sni,
            "probe": agentwire.probe_to_wire(leaf_only),
        }


@dataclass
class SweepResult:
    services: list[Service] = field(default_factory=list)
    attempts: int = 0
    seconds: float = 0.0


def range_addresses(cidr: str) -> list[str]:
    """Every host address of `cidr` (a /32 or /128 is its one address); refuses > 1024 addresses."""
    network = ipaddress.ip_network(cidr, strict=False)
    if network.num_addresses > MAX_RANGE_ADDRESSES:
        raise ValueError(f"at most {MAX_RANGE_ADDRESSES} addresses per range")
    if network.num_addresses <= 2:
        return [str(a) for a in network]
    return [str(a) for a in network.hosts()]


def _leaf_names(probe: tlsprobe.Probe) -> list[str]:
    if not probe.chain_der:
        return []
    try:
        leaf = parse_certificate(probe.chain_der[0])
    except (CertificateParseError, ValueError):
        return []
    return list(leaf.names)


def names_to_ask(presented: Sequence[str], watched: Sequence[str]) -> list[str]:
    """Watched names a presented certificate covers (at most three), to ask with SNI."""
    out: list[str] = []
    for name in watched:
        if any(name_matches(p.lower(), name) for p in presented) and name not in out:
            out.append(name)
        if len(out) >= MAX_NAMES_PER_SERVICE:
            break
    return out


async def sweep(
    cidr: str,
    ports: Sequence[int],
    *,
    limiters: Sequence[RateLimiter],
    allow_private: bool,
    names: Sequence[str] = (),
    deadline: float = 5.0,
    connect_timeout: float = 2.0,
    concurrency: int = 20,
    rng: random.Random | None = None,
) -> SweepResult:
    """Find the TLS services of `cidr` on `ports`."""
    started = time.monotonic()
    pairs = [(address, port) for address in range_addresses(cidr) for port in list(ports)[:MAX_PORTS]]
    (rng or random.Random()).shuffle(pairs)
    gate = asyncio.Semaphore(max(1, concurrency))
    result = SweepResult()

    async def ask(address: str, port: int, sni: str) -> tlsprobe.Probe:
        for limiter in limiters:
            await limiter.wait()
        result.attempts += 1
        async with gate:
            return await tlsprobe.probe(
                address,
                port,
                sni=sni,
                protocol=default_protocol(port),
                allow_private=allow_private,
                deadline_seconds=deadline,
                connect_timeout=connect_timeout,
                legacy_probe=False,
            )

    async def one(address: str, port: int) -> list[Service]:
        first = await ask(address, port, "")
        if not first.ok:
            return []
        presented = _leaf_names(first)
        found = [Service(address, port, default_protocol(port), "", first, presented)]
        for name in names_to_ask(presented, names):
            again = await ask(address, port, name)
            if again.ok and again.chain_der[:1] != first.chain_der[:1]:
                found.append(Service(address, port, default_protocol(port), name, again, _leaf_names(again)))
        return found

    for services in await asyncio.gather(*(one(a, p) for a, p in pairs)):
        result.services.extend(services)
    result.seconds = time.monotonic() - started
    return result


@dataclass(frozen=True)
class RangeJob:
    """One range of a sweeping pass: its ports, its own rate (starts per second) and the names to
    ask by SNI when a certificate covers them."""

    cidr: str
    ports: Sequence[int]
    rate: float
    names: Sequence[str] = ()


async def sweep_ranges(
    jobs: Sequence[RangeJob],
    *,
    shared: RateLimiter,
    allow_private: bool,
    deadline: float = 5.0,
    connect_timeout: float = 2.0,
    rng: random.Random | None = None,
) -> list[SweepResult]:
    """Sweep several ranges concurrently: every attempt waits for its range's limiter and for
    `shared`, the one global limiter across all of them (the SaaS's pass and an agent's pass)."""
    rng = rng or random.Random()
    return list(
        await asyncio.gather(
            *(
                sweep(
                    job.cidr,
                    job.ports,
                    limiters=[RateLimiter(job.rate), shared],
                    allow_private=allow_private,
                    names=job.names,
                    deadline=deadline,
                    connect_timeout=connect_timeout,
                    rng=random.Random(rng.random()),
                )
                for job in jobs
            )
        )
    )
