"""`python -m lab`: run every scanner scenario locally for a demo, until Ctrl-C.

Prints the lab DNS server, the root CA file and one `host:port` per scenario, ready for

    KEYCHEST_ALLOW_PRIVATE_TARGETS=1 KEYCHEST_DNS_NAMESERVERS=<printed> \\
        python manage.py spotcheck valid.lab.keychest.test:<port> --ca-file <printed>
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import threading

from lab.dns import LabDNS
from lab.pki import CA, now, self_signed
from lab.tls import Endpoint, Lab

DOMAIN = "lab.keychest.test"


def scenarios(lab: Lab) -> dict[str, Endpoint]:
    def name(label: str) -> str:
        return f"{label}.{DOMAIN}"

    rogue = CA("Rogue Root").intermediate("Rogue Intermediate")
    rsa = lab.root.intermediate("KeyChest Lab RSA Intermediate", key_kind="rsa")
    old = now() - dt.timedelta(days=100)
    endpoints = {
        "valid": lab.tls(lab.leaf([name("valid")])),
        "expired": lab.tls(lab.leaf([name("expired")], not_before=old, not_after=now() - dt.timedelta(days=1))),
        "future": lab.tls(lab.leaf([name("future")], not_before=now() + dt.timedelta(days=3))),
        "renewal-due": lab.tls(lab.leaf([name("renewal-due")], not_before=now() - dt.timedelta(days=70))),
        "mismatch": lab.tls(lab.leaf(["somewhere-else.example"])),
        "self-signed": lab.tls(self_signed([name("self-signed")])),
        "untrusted": lab.tls(rogue.issue([name("untrusted")]), include_root=True),
        "incomplete": lab.tls(lab.leaf([name("incomplete")]), include_intermediates=False),
        "weak-key": lab.tls(lab.leaf([name("weak-key")], key_kind="rsa", key_size=1024)),
        "sha1": lab.tls(rsa.issue([name("sha1")], key_kind="rsa", sha1=True)),
        "ca-leaf": lab.tls(lab.leaf([name("ca-leaf")], ca_flag=True)),
        "legacy": lab.tls(lab.leaf([name("legacy")]), legacy=True),
        "smtp": lab.starttls("smtp", lab.leaf([name("smtp")])),
        "imap": lab.starttls("imap", lab.leaf([name("imap")])),
        "silent": lab.silent(),
        "trickle": lab.trickle(),
        "banner": lab.banner(),
    }
    split = lab.tls(lab.leaf([name("disagree")]), hosts=["127.0.0.1", "127.0.0.2"])
    split.serve(lab.leaf([name("disagree")]), host="127.0.0.2")
    endpoints["disagree"] = split
    return endpoints


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    lab = Lab()
    dns = LabDNS().start()
    endpoints = scenarios(lab)
    for label, endpoint in endpoints.items():
        dns.set(f"{label}.{DOMAIN}", endpoint.hosts)
    root = lab.folder / "lab-root.pem"
    root.write_text(lab.root_pem)
    print(f"KEYCHEST_ALLOW_PRIVATE_TARGETS=1 KEYCHEST_DNS_NAMESERVERS={dns.nameserver}")
    print(f"root CA: {root}")
    for label, endpoint in endpoints.items():
        protocol = f"  (--starttls {endpoint.kind})" if endpoint.kind in ("smtp", "imap") else ""
        print(f"  {label}.{DOMAIN}:{endpoint.port}{protocol}")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    dns.stop()
    lab.stop()


if __name__ == "__main__":
    main()
