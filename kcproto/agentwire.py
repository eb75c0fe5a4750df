"""The agent protocol's wire format: what `keychest-agent` sends and what the server accepts.

Pure code (no Django), imported by both sides, so the agent and the server cannot drift apart.
An agent reports *observations* only (addresses, the chain as DER, handshake facts, timings);
the server validates the chain and derives findings itself. Every field read from a report is
bounded here: a buggy or hostile agent gets a `WireError`, never an oversized row.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from kcproto import netguard, tlsprobe
from kcproto.x509 import MAX_CERTIFICATE_BYTES

PROTOCOL_VERSION = 1
MAX_RESULTS_PER_BATCH = 200
# Well under Django's default request body limit (2.5 MB), whatever the chains weigh.
MAX_BATCH_BYTES = 1_000_000
MAX_ADDRESSES = 64
MAX_CERT_BYTES = MAX_CERTIFICATE_BYTES  # the one cap, however a certificate arrives
MAX_TEXT = 500
# What a report may say about an address: the probe's error codes are short identifiers.
_TEXT_FIELDS = {"error_code": 40, "error_message": MAX_TEXT, "tls_version": 16, "cipher": 100}


class WireError(ValueError):
    """A report that does not follow the protocol (the whole batch item is refused)."""


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str) or len(text) > MAX_CERT_BYTES * 4 // 3 + 4:
        raise WireError("a certificate must be base64 DER of at most 64 KiB")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("a certificate is not valid base64") from None


def _chain(value: Any) -> list[bytes]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or len(value) > tlsprobe.MAX_CHAIN:
        raise WireError(f"a chain is a list of at most {tlsprobe.MAX_CHAIN} certificates")
    return [_unb64(item) for item in value]


def _address(value: Any) -> str:
    if not isinstance(value, str):
        raise WireError("an address must be a string")
    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        raise WireError(f"{value[:60]!r} is not an IP address") from None


def probe_to_wire(probe: tlsprobe.Probe) -> dict[str, Any]:
    """One probe as the agent sends it."""
    return {
        "address": probe.address,
        "port": probe.port,
        "error_code": probe.error_code,
        "error_message": probe.error_message,
        "chain": [_b64(der) for der in probe.chain_der],
        "chain_truncated": probe.chain_truncated,
        "tls_version": probe.tls_version,
        "cipher": probe.cipher,
        "legacy_versions": list(probe.legacy_versions),
        "alt_chain": [_b64(der) for der in probe.alt_chain_der],
        "alternate_probed": probe.alternate_probed,
        "elapsed_ms": probe.elapsed_ms,
    }


def probe_from_wire(data: Any, *, port: int) -> tlsprobe.Probe:
    """A probe as the server reads it; `port` is the target's own (an agent cannot move it)."""
    if not isinstance(data, dict):
        raise WireError("a probe must be an object")
    texts: dict[str, str] = {}
    for name, limit in _TEXT_FIELDS.items():
        value = data.get(name, "")
        if not isinstance(value, str):
            raise WireError(f"{name} must be a string")
        texts[name] = value[:limit]
    legacy = data.get("legacy_versions") or []
    if not isinstance(legacy, list) or not all(v in tlsprobe.LEGACY_NAMES.values() for v in legacy):
        raise WireError("legacy_versions lists only 'TLS 1.0' and 'TLS 1.1'")
    elapsed = data.get("elapsed_ms", 0)
    if not isinstance(elapsed, int) or isinstance(elapsed, bool) or not 0 <= elapsed <= 10**7:
        raise WireError("elapsed_ms must be a whole number of milliseconds")
    chain = _chain(data.get("chain"))
    if not texts["error_code"] and not chain:
        raise WireError("a probe without an error must carry the chain")
    return tlsprobe.Probe(
        address=_address(data.get("address")),
        port=port,
        chain_der=chain,
        chain_truncated=bool(data.get("chain_truncated", False)),
        legacy_versions=sorted(set(legacy)),
        alt_chain_der=_chain(data.get("alt_chain")),
        alternate_probed=bool(data.get("alternate_probed", False)),
        elapsed_ms=elapsed,
        **texts,
    )


def batches(results: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Results split into batches of at most MAX_RESULTS_PER_BATCH items and about MAX_BATCH_BYTES
    of JSON each (one oversized item still travels alone)."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for item in results:
        weight = len(json.dumps(item))
        if current and (len(current) >= MAX_RESULTS_PER_BATCH or size + weight > MAX_BATCH_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += weight
    if current:
        out.append(current)
    return out


def sweep_reports(range_id: str, services: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    """One range's sweep as the bodies of `POST /api/v1/agent/sweeps`: the services in size-bounded
    parts (as `batches`) under one sweep id, so a /22 full of services never outgrows a request.
    The server judges vanished services only once every part of the sweep is in."""
    parts = batches(services) or [[]]
    sweep_id = uuid.uuid4().hex
    return [
        {"range": range_id, "sweep": sweep_id, "part": i, "parts": len(parts), "services": part, "seconds": seconds}
        for i, part in enumerate(parts)
    ]


def resolution_to_wire(resolution: netguard.Resolution | None) -> dict[str, Any] | None:
    if resolution is None:
        return None
    return {
        "addresses": [str(a) for a in resolution.addresses],
        "refused": [list(r) for r in resolution.refused],
        "error": resolution.error,
    }


def resolution_from_wire(data: Any, host: str) -> netguard.Resolution | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise WireError("a resolution must be an object")
    addresses = data.get("addresses") or []
    refused = data.get("refused") or []
    error = data.get("error") or ""
    if not isinstance(addresses, list) or len(addresses) > MAX_ADDRESSES:
        raise WireError(f"at most {MAX_ADDRESSES} addresses")
    if not isinstance(refused, list) or len(refused) > MAX_ADDRESSES:
        raise WireError(f"at most {MAX_ADDRESSES} refused addresses")
    if not isinstance(error, str):
        raise WireError("error must be a string")
    pairs: list[tuple[str, str]] = []
    for item in refused:
        if not isinstance(item, list) or len(item) != 2 or not all(isinstance(x, str) for x in item):
            raise WireError("a refused address is [address, reason]")
        pairs.append((_address(item[0]), item[1][:40]))
    return netguard.Resolution(
        host=host,
        addresses=[ipaddress.ip_address(_address(a)) for a in addresses],
        refused=pairs,
        error=error[:40],
    )


@dataclass
class Target:
    """One item of an agent's work list."""

    id: str
    host: str
    port: int
    protocol: str = "tls"
    pinned_ip: str = ""
    # Whether this scan should include the daily second looks (TLS 1.0/1.1, the other key family).
    legacy_probe: bool = False
    alternate_key: bool = False
    due: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "pinned_ip": self.pinned_ip,
            "legacy_probe": self.legacy_probe,
            "alternate_key": self.alternate_key,
            "due": self.due,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Target:
        return cls(
            id=str(data["id"]),
            host=str(data["host"]),
            port=int(data["port"]),
            protocol=str(data.get("protocol") or "tls"),
            pinned_ip=str(data.get("pinned_ip") or ""),
            legacy_probe=bool(data.get("legacy_probe")),
            alternate_key=bool(data.get("alternate_key")),
            due=bool(data.get("due", True)),
        )


@dataclass
class RangeTarget:
    """An IP range an agent sweeps for TLS services (discovery)."""

    id: str
    cidr: str
    ports: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    rate_per_second: float = 10.0
    due: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "cidr": self.cidr,
            "ports": list(self.ports),
            "names": list(self.names),
            "rate_per_second": self.rate_per_second,
            "due": self.due,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RangeTarget:
        return cls(
            id=str(data["id"]),
            cidr=str(data["cidr"]),
            ports=[int(p) for p in data.get("ports") or []],
            names=[str(n) for n in data.get("names") or []],
            rate_per_second=float(data.get("rate_per_second") or 10.0),
            due=bool(data.get("due", True)),
        )
