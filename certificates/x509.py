"""Parse certificates (DER or PEM) into plain data. Pure: no Django.

The one fact that needs care is the *issuance key*: a precertificate (with the CT poison
extension) and the final certificate (with the SCT list instead) are one issuance. Both
TBSCertificates, with those two extensions removed, are byte-for-byte equal (RFC 6962 §3.1), so
the SHA-256 of that stripped TBSCertificate identifies the issuance.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

from certificates.names import normalise_certificate_name

# DER of the OIDs (tag, length, value) of the two extensions that differ between a precertificate
# and its certificate.
_POISON_OID = bytes.fromhex("060a2b06010401d679020403")  # 1.3.6.1.4.1.11129.2.4.3
_SCT_LIST_OID = bytes.fromhex("060a2b06010401d679020402")  # 1.3.6.1.4.1.11129.2.4.2
_STRIP_OIDS = (_POISON_OID, _SCT_LIST_OID)
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


class CertificateParseError(ValueError):
    """The bytes are not a certificate KeyChest can read (malformed DER/PEM, broken fields)."""


@dataclass(frozen=True, slots=True)
class ParsedCertificate:
    """Everything KeyChest stores about one certificate, read once from its DER."""

    der: bytes
    sha256: str
    serial: str
    issuer: str
    subject: str
    issuer_key_id: str
    subject_key_id: str
    not_before: datetime
    not_after: datetime
    key_type: str
    key_size: int
    signature_algorithm: str
    is_ca: bool
    is_precertificate: bool
    issuance_key: str
    # Normalised host names (wildcards kept as "*.x") and IP addresses, in certificate order.
    names: tuple[str, ...] = field(default=())
    ip_addresses: tuple[str, ...] = field(default=())

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before

    @property
    def all_names(self) -> tuple[str, ...]:
        return self.names + self.ip_addresses


# --- minimal DER walking (only what the issuance key needs) ---------------------------------
def _read_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the element at `pos`."""
    if pos + 2 > len(data):
        raise CertificateParseError("truncated DER")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise CertificateParseError("high tag numbers are not used in certificates")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise CertificateParseError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise CertificateParseError("truncated DER")
    return tag, pos, end


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(value)) + value


def strip_ct_extensions(tbs: bytes) -> bytes:
    """The TBSCertificate without the CT poison and SCT-list extensions (re-encoded DER)."""
    tag, start, end = _read_tlv(tbs, 0)
    if tag != 0x30:
        raise CertificateParseError("TBSCertificate is not a SEQUENCE")
    parts: list[bytes] = []
    pos = start
    changed = False
    while pos < end:
        el_tag, v_start, v_end = _read_tlv(tbs, pos)
        element = tbs[pos:v_end]
        if el_tag == 0xA3:  # [3] EXPLICIT Extensions
            seq_tag, s_start, s_end = _read_tlv(tbs, v_start)
            if seq_tag != 0x30:
                raise CertificateParseError("extensions are not a SEQUENCE")
            kept: list[bytes] = []
            epos = s_start
            while epos < s_end:
                _, e_start, e_end = _read_tlv(tbs, epos)
                _, _, o_end = _read_tlv(tbs, e_start)
                oid = tbs[e_start:o_end]
                if oid in _STRIP_OIDS:
                    changed = True
                else:
                    kept.append(tbs[epos:e_end])
                epos = e_end
            if changed:
                element = _tlv(0xA3, _tlv(0x30, b"".join(kept))) if kept else b""
        parts.append(element)
        pos = v_end
    if not changed:
        return tbs[:end]
    return _tlv(0x30, b"".join(parts))


def issuance_key(tbs: bytes) -> str:
    """SHA-256 (hex) of the TBSCertificate without the CT poison and SCT list."""
    return hashlib.sha256(strip_ct_extensions(tbs)).hexdigest()


# --- parsing --------------------------------------------------------------------------------
def pem_to_der_list(data: bytes | str) -> list[bytes]:
    """Every certificate in a PEM bundle, as DER, in order."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    try:
        return [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(raw)]
    except ValueError as exc:
        raise CertificateParseError(f"not a PEM certificate: {exc}") from None


def to_der(data: bytes | str) -> bytes:
    """DER of one certificate given as DER or PEM (the first one of a PEM bundle)."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    if _PEM_BEGIN in raw[:4096] or raw.lstrip()[:5] == b"-----":
        ders = pem_to_der_list(raw)
        if not ders:
            raise CertificateParseError("no certificate in the PEM text")
        return ders[0]
    return bytes(raw)


def _key(cert: x509.Certificate) -> tuple[str, int]:
    try:
        key = cert.public_key()
    except (ValueError, TypeError, NotImplementedError):
        # Unknown or broken key algorithms still leave a usable certificate record.
        return "unknown", 0
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    return "unknown", 0


def _names(cert: x509.Certificate, extensions: x509.Extensions) -> tuple[tuple[str, ...], tuple[str, ...]]:
    dns: list[str] = []
    ips: list[str] = []
    try:
        san = extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for raw in san.get_values_for_type(x509.DNSName):
            name = normalise_certificate_name(raw)
            if name is not None and name not in dns:
                dns.append(name)
        for ip in san.get_values_for_type(x509.IPAddress):
            if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address) and ip.compressed not in ips:
                ips.append(ip.compressed)
    if not dns and not ips:
        # Old certificates (and some private CAs) name the host only in the subject CN.
        for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            value = attr.value if isinstance(attr.value, str) else attr.value.decode("utf-8", "replace")
            name = normalise_certificate_name(value)
            if name is None:
                continue
            if ":" in name or name.replace(".", "").isdigit():
                if name not in ips:
                    ips.append(name)
            elif name not in dns:
                dns.append(name)
    return tuple(dns), tuple(ips)


def parse_certificate(data: bytes | str) -> ParsedCertificate:
    """Parse one certificate (DER, or PEM text/bytes). Raises CertificateParseError if malformed."""
    der = to_der(data)
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
        poison = any(ext.oid == ExtensionOID.PRECERT_POISON for ext in extensions)
        try:
            bc = extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
            is_ca = bool(bc.ca)
        except x509.ExtensionNotFound:
            is_ca = False
        try:
            aki = extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value.key_identifier
        except x509.ExtensionNotFound:
            aki = None
        try:
            ski = extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest
        except x509.ExtensionNotFound:
            ski = None
        dns, ips = _names(cert, extensions)
        key_type, key_size = _key(cert)
        try:
            sig = cert.signature_algorithm_oid._name
        except (ValueError, AttributeError):
            sig = "unknown"
        serial = cert.serial_number
        tbs = cert.tbs_certificate_bytes
        return ParsedCertificate(
            der=der,
            sha256=hashlib.sha256(der).hexdigest(),
            serial=format(serial, "x") if serial >= 0 else "-" + format(-serial, "x"),
            issuer=_name_text(cert.issuer),
            subject=_name_text(cert.subject),
            issuer_key_id=aki.hex() if aki else "",
            subject_key_id=ski.hex() if ski else "",
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            key_type=key_type,
            key_size=key_size,
            signature_algorithm=sig if sig and sig != "Unknown OID" else cert.signature_algorithm_oid.dotted_string,
            is_ca=is_ca,
            is_precertificate=poison,
            issuance_key=issuance_key(tbs),
            names=dns,
            ip_addresses=ips,
        )
    except CertificateParseError:
        raise
    except (ValueError, TypeError, UnicodeError, OverflowError) as exc:
        raise CertificateParseError(f"malformed certificate: {exc}") from None


def _name_text(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()[:1000]
    except (ValueError, UnicodeError):
        return "(unreadable name)"
