"""A small authoritative DNS server (dnslib) answering for lab names, over UDP and TCP.

Point the scanner at it with ``KEYCHEST_DNS_NAMESERVERS=127.0.0.1:<port>``. Answers are a dict
``name -> list of addresses`` (A and AAAA are chosen by address family), or a callable
``(name, rdtype, query_count) -> list of addresses`` for answers that change between queries
(DNS rebinding tests). Names not in the table get NXDOMAIN; names mapped to ``"SERVFAIL"`` get
SERVFAIL; names mapped to ``"TIMEOUT"`` get no answer at all. CAA records are set apart with
``set_caa(name, [(flags, tag, value), ...])``.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from dnslib import AAAA, CAA, QTYPE, RCODE, RR, A, DNSError, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

Answer = list[str] | str
Dynamic = Callable[[str, str, int], Answer]


class _Resolver(BaseResolver):
    def __init__(self, lab: LabDNS) -> None:
        self.lab = lab

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        with self.lab.lock:
            self.lab.queries[(qname, qtype)] += 1
            count = self.lab.queries[(qname, qtype)]
            answer: Answer | None = self.lab.records.get(qname)
            dynamic = self.lab.dynamic.get(qname)
            caa = self.lab.caa.get(qname)
        if qtype == "CAA" and caa is not None:
            for flags, tag, value in caa:
                reply.add_answer(RR(request.q.qname, QTYPE.CAA, rdata=CAA(flags, tag, value), ttl=60))
            return reply
        if dynamic is not None:
            answer = dynamic(qname, qtype, count)
        if answer is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if answer == "TIMEOUT":
            # dnslib's handler sends nothing for a DNSError and logs it (quietly, see below).
            raise DNSError(f"{qname}: no answer (TIMEOUT)")
        if answer == "SERVFAIL":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        for text in answer:
            ip = ipaddress.ip_address(text)
            if ip.version == 4 and qtype == "A":
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(text), ttl=60))
            elif ip.version == 6 and qtype == "AAAA":
                reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA(text), ttl=60))
        return reply


class _QuietLogger(DNSLogger):
    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)


class LabDNS:
    """A running lab DNS server on ``host:port`` (UDP and TCP on the same port)."""

    def __init__(self, records: dict[str, Answer] | None = None, *, host: str = "127.0.0.1") -> None:
        self.lock = threading.Lock()
        self.records: dict[str, Answer] = {k.lower().rstrip("."): v for k, v in (records or {}).items()}
        self.dynamic: dict[str, Dynamic] = {}
        self.caa: dict[str, list[tuple[int, str, str]]] = {}
        self.queries: Counter[tuple[str, str]] = Counter()
        resolver = _Resolver(self)
        self._udp = DNSServer(resolver, address=host, port=0, logger=_QuietLogger())
        self.host = host
        self.port = self._udp.server.server_address[1]
        # TCP on the same port as UDP, for truncated answers.
        try:
            self._tcp: DNSServer | None = DNSServer(
                resolver, address=host, port=self.port, tcp=True, logger=_QuietLogger()
            )
        except OSError:
            self._tcp = None

    @property
    def nameserver(self) -> str:
        """The ``KEYCHEST_DNS_NAMESERVERS`` value for this server."""
        return f"{self.host}:{self.port}"

    def set(self, name: str, answer: Answer | Dynamic) -> None:
        key = name.lower().rstrip(".")
        with self.lock:
            if callable(answer):
                self.dynamic[key] = answer
                self.records.pop(key, None)
            else:
                self.records[key] = answer
                self.dynamic.pop(key, None)

    def set_caa(self, name: str, records: list[tuple[int, str, str]]) -> None:
        """CAA records of `name`, e.g. ``[(0, "issue", "letsencrypt.org")]``."""
        with self.lock:
            self.caa[name.lower().rstrip(".")] = list(records)

    def start(self) -> LabDNS:
        self._udp.start_thread()
        if self._tcp is not None:
            self._tcp.start_thread()
        return self

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            if server is not None:
                server.server.shutdown()
                server.server.server_close()

    def __enter__(self) -> LabDNS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
