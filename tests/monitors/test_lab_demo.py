"""`python -m lab` serves every demo scenario, and the scanner sees each one's problem."""

from __future__ import annotations

import asyncio

from kcproto import tlsprobe
from lab.__main__ import DOMAIN, scenarios
from lab.tls import Lab


def test_the_demo_lab_serves_each_scenario() -> None:
    with Lab() as lab:
        endpoints = scenarios(lab)

        async def probe_all() -> dict[str, tlsprobe.Probe]:
            results = await asyncio.gather(
                *(
                    tlsprobe.probe(
                        e.host,
                        e.port,
                        sni=f"{label}.{DOMAIN}",
                        protocol=e.kind if e.kind in ("smtp", "imap") else "tls",
                        allow_private=True,
                        deadline_seconds=1.5,
                    )
                    for label, e in endpoints.items()
                )
            )
            return dict(zip(endpoints, results, strict=True))

        probes = asyncio.run(probe_all())
    assert probes["silent"].error_code == probes["trickle"].error_code == "timeout"
    assert probes["banner"].error_code == "not_tls"
    assert probes["legacy"].legacy_versions
    ok = {label for label, p in probes.items() if p.ok and p.chain_der}
    assert ok == set(endpoints) - {"silent", "trickle", "banner"}
