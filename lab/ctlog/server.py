"""A real local CT log over HTTP: RFC 6962 (get-sth, get-entries, get-roots, proofs) or static-ct-api.

It generates certificates and precertificates (many names, wildcards, IDNs), keeps a real
Merkle tree, signs tree heads with its own key, and has switches for the faults real logs show:
short batches, 429, 500, a malformed entry, a wrong signature, a tampered entry (root mismatch),
a truncated tile, a vanished log, a log without `get-entry-and-proof`, and the answers a hostile
log could give its monitors (a redirect, a huge answer, a trickle). Binds 127.0.0.1 on an
ephemeral port.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kcproto.ctformat import (
    PRECERT_ENTRY,
    X509_ENTRY,
    encode_asn1_chain,
    encode_tile_leaf,
    encode_timestamped_entry,
    leaf_index_extension,
    sign_checkpoint,
    sign_digitally_signed,
    sth_signature_input,
)
from kcproto.merkle import MerkleTree, leaf_hash
from kcproto.x509 import strip_ct_extensions
from lab.ctlog.certgen import Issuance, Issuer, issue, make_ca, random_names

RFC6962 = "rfc6962"
STATIC = "static"


@dataclass
class Faults:
    """Switches; counters count down one per affected request."""

    short_batches: bool = False  # get-entries answers fewer entries than asked (random, >= 1)
    status_429: int = 0  # the next N requests answer 429 Too Many Requests
    status_500: int = 0  # the next N requests answer 500
    wrong_signature: bool = False  # tree heads are signed with a key that is not the log's
    tampered: set[int] = field(default_factory=set)  # serve different bytes for these indexes
    truncated_tiles: int = 0  # the next N data tiles are cut short
    vanished: bool = False  # every request answers 404, as for a log that was shut down
    no_entry_and_proof: bool = False  # get-entry-and-proof answers 404 (an optional endpoint left out)
    # Hostile answers, to every request:
    redirect_to: str = ""  # 302 to this URL (say, a cloud metadata address)
    oversized: int = 0  # an answer of this many bytes, streamed
    oversized_chunked: bool = False  # ... without a Content-Length (chunked)
    trickle_seconds: float = 0.0  # a valid answer, one byte every this many seconds (headers too)


@dataclass
class _Entry:
    leaf_input: bytes
    extra_data: bytes
    tile_leaf: bytes


class LocalCTLog:
    """One CT log (RFC 6962 or static-ct-api) served over HTTP on 127.0.0.1."""

    def __init__(
        self,
        *,
        api: str = RFC6962,
        max_batch: int = 256,
        seed: int = 1,
        description: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if api not in (RFC6962, STATIC):
            raise ValueError(api)
        self.api = api
        self.max_batch = max_batch
        self.rng = random.Random(seed)
        self.faults = Faults()
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.public_key_der = self.key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        self._wrong_key = ec.generate_private_key(ec.SECP256R1())
        self.root_ca = make_ca("KeyChest Lab CT Root")
        self.issuers = [make_ca(f"KeyChest Lab Issuing CA {i}", parent=self.root_ca) for i in (1, 2)]
        self._issuer_by_fp = {hashlib.sha256(c.der).digest(): c.der for c in [self.root_ca, *self.issuers]}
        self._leaf_keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(8)]
        self.entries: list[_Entry] = []
        self.tree = MerkleTree()
        self.published_size = 0
        self.published_timestamp = 0
        self.lock = threading.RLock()
        self.requests: list[str] = []
        self.connections = 0  # TCP connections accepted (keep-alive keeps this low)
        self.oversized_sent = 0  # bytes of the oversized answers actually sent
        self._server = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.description = description or f"KeyChest Lab {api} log"

    # --- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def origin(self) -> str:
        """static-ct-api origin: the submission URL without scheme and trailing slash."""
        return self.url.split("://", 1)[1].rstrip("/")

    @property
    def log_id(self) -> str:
        return base64.b64encode(hashlib.sha256(self.public_key_der).digest()).decode()

    def start(self) -> LocalCTLog:
        self._thread = threading.Thread(target=self._server.serve_forever, name="lab-ctlog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalCTLog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- contents -----------------------------------------------------------------------
    def add_issuance(self, issuance: Issuance, *, precertificate: bool = True, certificate: bool = True) -> list[int]:
        """Log the precertificate and/or the final certificate of an issuance; returns their indexes."""
        out = []
        if precertificate:
            out.append(self._append_precert(issuance.precertificate, issuance.issuer))
        if certificate:
            out.append(self._append_cert(issuance.certificate, issuance.issuer))
        return out

    def add_certificate(self, der: bytes, issuer: Issuer) -> int:
        return self._append_cert(der, issuer)

    def issue(self, names: list[str], **kwargs: Any) -> Issuance:
        issuer = kwargs.pop("issuer", None) or self.rng.choice(self.issuers)
        kwargs.setdefault("public_key", self.rng.choice(self._leaf_keys))
        return issue(issuer, names, **kwargs)

    def add_random(self, count: int, *, final_share: float = 0.5) -> int:
        """Append about `count` entries: random issuances, each a precertificate and often the final cert."""
        added = 0
        while added < count:
            issuance = self.issue(random_names(self.rng))
            with_final = self.rng.random() < final_share and added + 2 <= count
            added += len(self.add_issuance(issuance, certificate=with_final))
        self.publish()
        return added

    def add_malformed(self) -> int:
        """An x509_entry whose certificate is garbage (the log accepted junk: it happens)."""
        junk = b"\x30\x82\x01\x00" + bytes(self.rng.randrange(256) for _ in range(40))
        return self._append_cert(junk, self.issuers[0])

    def _timestamp(self) -> int:
        return int(time.time() * 1000)

    def _append_cert(self, der: bytes, issuer: Issuer) -> int:
        with self.lock:
            index = len(self.entries)
            ext = leaf_index_extension(index)
            te = encode_timestamped_entry(self._timestamp(), X509_ENTRY, der, extensions=ext)
            chain = [issuer.der, self.root_ca.der]
            self._append(
                _Entry(
                    leaf_input=b"\x00\x00" + te,
                    extra_data=encode_asn1_chain(chain),
                    tile_leaf=encode_tile_leaf(te, precertificate=None, fingerprints=_fps(chain)),
                )
            )
            return index

    def _append_precert(self, der: bytes, issuer: Issuer) -> int:
        from cryptography import x509

        tbs = strip_ct_extensions(x509.load_der_x509_certificate(der).tbs_certificate_bytes)
        ikh = hashlib.sha256(
            issuer.certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        ).digest()
        with self.lock:
            index = len(self.entries)
            ext = leaf_index_extension(index)
            te = encode_timestamped_entry(self._timestamp(), PRECERT_ENTRY, tbs, issuer_key_hash=ikh, extensions=ext)
            chain = [issuer.der, self.root_ca.der]
            extra = len(der).to_bytes(3, "big") + der + encode_asn1_chain(chain)
            self._append(
                _Entry(
                    leaf_input=b"\x00\x00" + te,
                    extra_data=extra,
                    tile_leaf=encode_tile_leaf(te, precertificate=der, fingerprints=_fps(chain)),
                )
            )
            return index

    def _append(self, entry: _Entry) -> None:
        self.entries.append(entry)
        self.tree.append(leaf_hash(entry.leaf_input))

    def publish(self) -> None:
        """Make every entry so far part of the signed tree (a log integrates within its MMD)."""
        with self.lock:
            self.published_size = len(self.entries)
            self.published_timestamp = self._timestamp()

    # --- what the log serves ------------------------------------------------------------
    def _signer(self) -> ec.EllipticCurvePrivateKey:
        return self._wrong_key if self.faults.wrong_signature else self.key

    def sth(self) -> dict[str, Any]:
        with self.lock:
            size, ts = self.published_size, self.published_timestamp or self._timestamp()
            root = self.tree.root(size)
        sig = sign_digitally_signed(self._signer(), sth_signature_input(ts, size, root))
        return {
            "tree_size": size,
            "timestamp": ts,
            "sha256_root_hash": base64.b64encode(root).decode(),
            "tree_head_signature": base64.b64encode(sig).decode(),
        }

    def checkpoint(self) -> bytes:
        with self.lock:
            size, ts = self.published_size, self.published_timestamp or self._timestamp()
            root = self.tree.root(size)
        return sign_checkpoint(
            self._signer(), origin=self.origin, public_key_der=self.public_key_der, size=size, root=root, timestamp=ts
        )

    def _served(self, index: int) -> _Entry:
        entry = self.entries[index]
        if index in self.faults.tampered:
            # Same shape, different certificate bytes: the leaf hash no longer fits the tree.
            te = bytearray(entry.leaf_input)
            te[-20] ^= 0xFF
            tl = bytearray(entry.tile_leaf)
            tl[20] ^= 0xFF
            return _Entry(bytes(te), entry.extra_data, bytes(tl))
        return entry

    def get_entries(self, start: int, end: int) -> list[dict[str, str]]:
        with self.lock:
            end = min(end, len(self.entries) - 1, start + self.max_batch - 1)
            if self.faults.short_batches and end > start:
                end = start + self.rng.randrange(0, end - start)
            return [
                {
                    "leaf_input": base64.b64encode(self._served(i).leaf_input).decode(),
                    "extra_data": base64.b64encode(self._served(i).extra_data).decode(),
                }
                for i in range(start, end + 1)
            ]

    def data_tile(self, index: int, width: int) -> bytes | None:
        with self.lock:
            first = index * 256
            if first + width > self.published_size:
                return None
            data = b"".join(self._served(i).tile_leaf for i in range(first, first + width))
            if self.faults.truncated_tiles > 0:
                self.faults.truncated_tiles -= 1
                return data[: len(data) // 2]
            return data

    def hash_tile(self, level: int, index: int, width: int) -> bytes | None:
        with self.lock:
            height = 8 * level
            first = index * 256
            if ((first + width) << height) > self.published_size or len(self.tree.levels) <= height:
                return None
            hashes = self.tree.levels[height][first : first + width]
            if len(hashes) != width:
                return None
            return b"".join(hashes)

    def issuer(self, fingerprint_hex: str) -> bytes | None:
        try:
            return self._issuer_by_fp.get(bytes.fromhex(fingerprint_hex))
        except ValueError:
            return None

    def log_list_entry(self) -> dict[str, Any]:
        common = {
            "description": self.description,
            "log_id": self.log_id,
            "key": base64.b64encode(self.public_key_der).decode(),
            "mmd": 60 if self.api == STATIC else 86400,
            "state": {"usable": {"timestamp": "2026-01-01T00:00:00Z"}},
            "temporal_interval": {
                "start_inclusive": "2020-01-01T00:00:00Z",
                "end_exclusive": "2040-01-01T00:00:00Z",
            },
        }
        if self.api == STATIC:
            return {**common, "submission_url": self.url, "monitoring_url": self.url}
        return {**common, "url": self.url}


def _fps(chain: list[bytes]) -> list[bytes]:
    return [hashlib.sha256(c).digest() for c in chain]


def log_list(logs: list[LocalCTLog], *, operator: str = "KeyChest Lab") -> dict[str, Any]:
    """A Chrome v3 log list naming these local logs."""
    return {
        "version": "1.0",
        "log_list_timestamp": "2026-11-01T00:00:00Z",
        "operators": [
            {
                "name": operator,
                "email": ["ct@keychest.invalid"],
                "logs": [log.log_list_entry() for log in logs if log.api == RFC6962],
                "tiled_logs": [log.log_list_entry() for log in logs if log.api == STATIC],
            }
        ],
    }


def write_log_list(path: str | Path, logs: list[LocalCTLog]) -> Path:
    target = Path(path)
    target.write_text(json.dumps(log_list(logs), indent=2))
    return target


def _parse_tile_index(parts: list[str]) -> tuple[int, int]:
    """('x001','x234','067' or '067.p', '17') -> (index, width)."""
    width = 256
    if len(parts) >= 2 and parts[-2].endswith(".p"):
        width = int(parts[-1])
        parts = [*parts[:-2], parts[-2][:-2]]
    digits = "".join(p.lstrip("x") for p in parts)
    if not digits.isdigit() or not 1 <= width <= 256:
        raise ValueError("bad tile path")
    return int(digits), width


class _CTLogHandler(BaseHTTPRequestHandler):
    """The lab CT log's HTTP handler; `_handler_for` binds it to one log."""

    ctlog: LocalCTLog
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        with self.ctlog.lock:
            self.ctlog.connections += 1

    def _hostile(self) -> bool:
        """Answer as a hostile log would, if switched on; True when it did."""
        faults = self.ctlog.faults
        if faults.redirect_to:
            self._send(302, b"", "text/plain", {"Location": faults.redirect_to})
            return True
        if faults.oversized:
            self._send_oversized(faults.oversized, chunked=faults.oversized_chunked)
            return True
        if faults.trickle_seconds:
            body = json.dumps(self.ctlog.sth()).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            try:
                for byte in head.encode() + body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(faults.trickle_seconds)
            except OSError:
                pass  # the client gave up: what the test wants
            self.close_connection = True
            return True
        return False

    def _send_oversized(self, size: int, *, chunked: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding" if chunked else "Content-Length", "chunked" if chunked else str(size))
        self.end_headers()
        block = b"0" * 65536
        sent = 0
        try:
            while sent < size:
                part = block[: min(len(block), size - sent)]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                sent += len(part)
                with self.ctlog.lock:
                    self.ctlog.oversized_sent += len(part)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client hung up, as it should long before the end
        self.close_connection = True

    def _send(
        self, status: int, body: bytes, ctype: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.ctlog.requests.append(url.path)
        faults = self.ctlog.faults
        with self.ctlog.lock:
            if faults.vanished:
                return self._send(404, b"gone", "text/plain")
            if faults.status_429 > 0:
                faults.status_429 -= 1
                return self._send(429, b"slow down", "text/plain", {"Retry-After": "1"})
            if faults.status_500 > 0:
                faults.status_500 -= 1
                return self._send(500, b"oops", "text/plain")
        if self._hostile():
            return None
        try:
            if self.ctlog.api == RFC6962:
                return self._rfc6962(url.path, parse_qs(url.query))
            return self._static(url.path)
        except (ValueError, KeyError, IndexError) as exc:
            return self._send(400, str(exc).encode(), "text/plain")

    def _rfc6962(self, path: str, q: dict[str, list[str]]) -> None:
        if path == "/ct/v1/get-sth":
            return self._send(200, json.dumps(self.ctlog.sth()).encode())
        if path == "/ct/v1/get-entries":
            start, end = int(q["start"][0]), int(q["end"][0])
            if start < 0 or end < start or start >= len(self.ctlog.entries):
                return self._send(400, b"bad range", "text/plain")
            return self._send(200, json.dumps({"entries": self.ctlog.get_entries(start, end)}).encode())
        if path == "/ct/v1/get-roots":
            return self._send(
                200, json.dumps({"certificates": [base64.b64encode(self.ctlog.root_ca.der).decode()]}).encode()
            )
        if path == "/ct/v1/get-entry-and-proof":
            if self.ctlog.faults.no_entry_and_proof:
                return self._send(404, b"404 page not found", "text/plain")
            index, size = int(q["leaf_index"][0]), int(q["tree_size"][0])
            if not 0 <= index < size <= self.ctlog.published_size:
                return self._send(400, b"bad index", "text/plain")
            entry = self.ctlog._served(index)
            proof = self.ctlog.tree.inclusion_proof(index, size)
            body = {
                "leaf_input": base64.b64encode(entry.leaf_input).decode(),
                "extra_data": base64.b64encode(entry.extra_data).decode(),
                "audit_path": [base64.b64encode(h).decode() for h in proof],
            }
            return self._send(200, json.dumps(body).encode())
        if path == "/ct/v1/get-sth-consistency":
            first, second = int(q["first"][0]), int(q["second"][0])
            if not 0 <= first <= second <= self.ctlog.published_size:
                return self._send(400, b"bad sizes", "text/plain")
            proof = self.ctlog.tree.consistency_proof(first, second)
            body = {"consistency": [base64.b64encode(h).decode() for h in proof]}
            return self._send(200, json.dumps(body).encode())
        return self._send(404, b"not found", "text/plain")

    def _static(self, path: str) -> None:
        if path == "/checkpoint":
            return self._send(200, self.ctlog.checkpoint(), "text/plain; charset=utf-8")
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "tile":
            index, width = _parse_tile_index(parts[2:])
            data = (
                self.ctlog.data_tile(index, width)
                if parts[1] == "data"
                else self.ctlog.hash_tile(int(parts[1]), index, width)
            )
            if data is None:
                return self._send(404, b"no such tile", "text/plain")
            return self._send(200, data, "application/octet-stream")
        if len(parts) == 2 and parts[0] == "issuer":
            der = self.ctlog.issuer(parts[1])
            if der is None:
                return self._send(404, b"no such issuer", "text/plain")
            return self._send(200, der, "application/pkix-cert")
        return self._send(404, b"not found", "text/plain")


def _handler_for(log: LocalCTLog) -> type[BaseHTTPRequestHandler]:
    class Handler(_CTLogHandler):
        ctlog = log

    return Handler
