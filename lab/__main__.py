"""`python -m lab`: run every scanner scenario locally for a demo, until Ctrl-C.

Prints the lab DNS server, the root CA file and one `host:port` per scenario, ready for

    KEYCHEST_ALLOW_PRIVATE_TARGETS=1 KEYCHEST_DNS_NAMESERVERS=<printed> \\
        python manage.py spotcheck valid.lab.keychest.test:<port> --ca-file <printed>
"""

from __future__ import annotations

import argparse
import signal
import threading

from lab.dns import LabDNS
from lab.scenarios import DOMAIN, SCENARIOS
from lab.tls import Endpoint, Lab


def scenarios(lab: Lab) -> dict[str, Endpoint]:
    """Every scenario of the catalogue (`lab.scenarios`), plus hostile servers and an address split."""
    endpoints = {scenario.label: scenario.serve(lab) for scenario in SCENARIOS}
    endpoints["silent"] = lab.silent()
    endpoints["trickle"] = lab.trickle()
    split = lab.tls(lab.leaf([f"disagree.{DOMAIN}"]), hosts=["127.0.0.1", "127.0.0.2"])
    split.serve(lab.leaf([f"disagree.{DOMAIN}"]), host="127.0.0.2")
    endpoints["disagree"] = split
    return endpoints


def host_of(label: str) -> str:
    for scenario in SCENARIOS:
        if scenario.label == label:
            return scenario.host
    return f"{label}.{DOMAIN}"


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    lab = Lab()
    dns = LabDNS().start()
    endpoints = scenarios(lab)
    for label, endpoint in endpoints.items():
        dns.set(host_of(label), endpoint.hosts)
    root = lab.folder / "lab-root.pem"
    root.write_text(lab.root_pem)
    print(f"KEYCHEST_ALLOW_PRIVATE_TARGETS=1 KEYCHEST_DNS_NAMESERVERS={dns.nameserver}")
    print(f"root CA: {root}")
    for label, endpoint in endpoints.items():
        protocol = f"  (--starttls {endpoint.kind})" if endpoint.kind in ("smtp", "imap") else ""
        print(f"  {host_of(label)}:{endpoint.port}{protocol}")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    dns.stop()
    lab.stop()


if __name__ == "__main__":
    main()
