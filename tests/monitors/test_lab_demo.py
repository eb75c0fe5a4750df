"""`python -m lab` serves every demo scenario, and the scanner sees each one's problem."""

from __future__ import annotations

import asyncio

from kcproto import tlsprobe
from lab.__main__ import host_of, scenarios
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
                        sni=host_of(label),
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
    assert probes["anonymous"].error_code == "no_certificate"
    assert probes["legacy"].legacy_versions
    assert probes["tls10-only"].tls_version == "TLSv1"
    ok = {label for label, p in probes.items() if p.ok and p.chain_der}
    assert ok == set(endpoints) - {"silent", "trickle", "banner", "anonymous"}
