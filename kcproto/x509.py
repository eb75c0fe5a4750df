"""Parse certificates (DER or PEM) into plain data. Pure: no Django.

The one fact that needs care is the *issuance key*: a precertificate (with the CT poison
extension) and the final certificate (with the SCT list instead) are one issuance. Both
TBSCertificates, with those two extensions removed, are byte-for-byte equal (RFC 6962 §3.1), so
the SHA-256 of that stripped TBSCertificate identifies the issuance.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

from kcproto.names import ip_literal, normalise_certificate_name

# DER of the OIDs (tag, length, value) of the two extensions that differ between a precertificate
# and its certificate.
_POISON_OID = bytes.fromhex("060a2b06010401d679020403")  # 1.3.6.1.4.1.11129.2.4.3
_SCT_LIST_OID = bytes.fromhex("060a2b06010401d679020402")  # 1.3.6.1.4.1.11129.2.4.2
_STRIP_OIDS = (_POISON_OID, _SCT_LIST_OID)
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
# The most one certificate may take as it arrives (PEM text or DER), whichever way it comes:
# a file, a form field, JSON, the agent protocol (security finding 5).
MAX_CERTIFICATE_BYTES = 64 * 1024


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
    # Normalised host names (wildcards kept as "*.x") and IP addresses, in certificate order; from
    # the subjectAltName, or (certificates without usable SAN names) from a host-like subject CN.
    names: tuple[str, ...] = field(default=())
    ip_addresses: tuple[str, ...] = field(default=())
    # The subjectAltName as clients match it (RFC 9525, kcproto.identity): dNSName values as
    # written ("example.com." keeps its dot), iPAddress values; has_san is False without one.
    san_dns: tuple[str, ...] = field(default=())
    san_ips: tuple[str, ...] = field(default=())
    has_san: bool = False
    # Why an extension could not be decoded ("" when every one could). Such a certificate is
    # still read (dates, names, key): only what the broken extension held is missing.
    extension_error: str = ""

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before

    @property
    def all_names(self) -> tuple[str, ...]:
        return self.names + self.ip_addresses


# --- minimal DER walking (only what the issuance key needs) ---------------------------------
def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(value)) + value


def _header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the DER element at `pos` — the hot path, kept inline-simple."""
    try:
        tag = data[pos]
        length = data[pos + 1]
    except IndexError:
        raise CertificateParseError("truncated DER") from None
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise CertificateParseError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise CertificateParseError("truncated DER")
    return tag, pos, end


# Extensions read straight from the DER (OID TLVs): cheaper than decoding every extension.
_SAN_OID = bytes.fromhex("0603551d11")  # 2.5.29.17
_BASIC_CONSTRAINTS_OID = bytes.fromhex("0603551d13")  # 2.5.29.19
_AKI_OID = bytes.fromhex("0603551d23")  # 2.5.29.35
_SKI_OID = bytes.fromhex("0603551d0e")  # 2.5.29.14
_READ_OIDS = frozenset((_SAN_OID, _BASIC_CONSTRAINTS_OID, _AKI_OID, _SKI_OID, _POISON_OID))


@dataclass(frozen=True, slots=True)
class _TBSParts:
    issuer: bytes
    subject: bytes
    spki: bytes
    stripped: bytes  # the TBSCertificate without the poison and SCT-list extensions
    # extnValue contents (inside the OCTET STRING) of the extensions KeyChest reads, by OID TLV.
    extensions: dict[bytes, bytes]
    duplicate: bool = False  # an extension appears twice (RFC 5280 4.2 forbids it; the first counts)


def _walk_tbs(tbs: bytes) -> _TBSParts:
    """One pass over the TBSCertificate: issuer, subject and key DER, the extensions KeyChest
    reads, and the CT-stripped TBSCertificate."""
    tag, start, end = _header(tbs, 0)
    if tag != 0x30:
        raise CertificateParseError("TBSCertificate is not a SEQUENCE")
    # Positions, not copies: only issuer, subject and key are sliced out (this runs per entry).
    plain: list[tuple[int, int]] = []  # top-level elements that are not [0] or [3]
    found: dict[bytes, bytes] = {}
    stripped = b""
    duplicate = False
    pos = start
    while pos < end:
        el_tag, v_start, v_end = _header(tbs, pos)
        if el_tag == 0xA3:  # [3] EXPLICIT Extensions
            seq_tag, s_start, s_end = _header(tbs, v_start)
            if seq_tag != 0x30:
                raise CertificateParseError("extensions are not a SEQUENCE")
            kept: list[bytes] = []
            seen: set[bytes] = set()
            changed = False
            epos = s_start
            while epos < s_end:
                _, e_start, e_end = _header(tbs, epos)
                o_tag, _, o_end = _header(tbs, e_start)
                oid = tbs[e_start:o_end]
                if o_tag != 0x06:
                    raise CertificateParseError("extension without an OID")
                duplicate = duplicate or oid in seen  # RFC 5280 4.2: at most one instance of each
                seen.add(oid)
                if oid in _READ_OIDS and oid not in found:
                    n_tag, n_start, n_end = _header(tbs, o_end)
                    if n_tag == 0x01:  # critical
                        n_tag, n_start, n_end = _header(tbs, n_end)
                    if n_tag != 0x04 or n_end != e_end:
                        raise CertificateParseError("malformed extension")
                    found[oid] = tbs[n_start:n_end]
                if oid in _STRIP_OIDS:
                    changed = True
                else:
                    kept.append(tbs[epos:e_end])
                epos = e_end
            if changed:
                element = _tlv(0xA3, _tlv(0x30, b"".join(kept))) if kept else b""
                stripped = _tlv(0x30, tbs[start:pos] + element + tbs[v_end:end])
        elif el_tag != 0xA0:
            plain.append((pos, v_end))
        pos = v_end
    # serial, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
    if len(plain) < 6:
        raise CertificateParseError("TBSCertificate has too few fields")
    return _TBSParts(
        issuer=tbs[plain[2][0] : plain[2][1]],
        subject=tbs[plain[4][0] : plain[4][1]],
        spki=tbs[plain[5][0] : plain[5][1]],
        stripped=stripped or tbs[:end],
        extensions=found,
        duplicate=duplicate,
    )


def _tbs_of(der: bytes) -> bytes:
    """The TBSCertificate element of a Certificate, sliced from the DER (no re-encoding)."""
    tag, start, _ = _header(der, 0)
    if tag != 0x30:
        raise CertificateParseError("not a SEQUENCE")
    _, _, tbs_end = _header(der, start)
    return der[start:tbs_end]


def strip_ct_extensions(tbs: bytes) -> bytes:
    """The TBSCertificate without the CT poison and SCT-list extensions (re-encoded DER)."""
    return _walk_tbs(tbs).stripped


def issuance_key(tbs: bytes) -> str:
    """SHA-256 (hex) of the TBSCertificate without the CT poison and SCT list."""
    return hashlib.sha256(strip_ct_extensions(tbs)).hexdigest()


# --- parsing --------------------------------------------------------------------------------
def pem_to_der_list(data: bytes | str) -> list[bytes]:
    """Every certificate in a PEM bundle, as DER, in order."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    try:
        return [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(raw)]
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        # InvalidVersion ("7 is not a valid X509 version") is no ValueError: it made uploads 500.
        raise CertificateParseError(f"not a PEM certificate cryptography can read: {exc}") from None


def to_der(data: bytes | str) -> bytes:
    """DER of one certificate given as DER or PEM (the first one of a PEM bundle)."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    if _PEM_BEGIN in raw[:4096] or raw.lstrip()[:5] == b"-----":
        ders = pem_to_der_list(raw)
        if not ders:
            raise CertificateParseError("no certificate in the PEM text")
        return ders[0]
    return bytes(raw)


_RSA_OID = bytes.fromhex("06092a864886f70d010101")
_EC_OID = bytes.fromhex("06072a8648ce3d0201")
_EC_CURVES = {
    bytes.fromhex("06082a8648ce3d030107"): 256,  # P-256
    bytes.fromhex("06052b81040022"): 384,  # P-384
    bytes.fromhex("06052b81040023"): 521,  # P-521
}
_ED25519_OID = bytes.fromhex("06032b6570")
_ED448_OID = bytes.fromhex("06032b6571")


def _key_from_spki(spki: bytes) -> tuple[str, int] | None:
    """Key type and size read straight from the SubjectPublicKeyInfo DER (cheaper than loading the key)."""
    _, start, _ = _header(spki, 0)
    _, a_start, a_end = _header(spki, start)
    _, _, o_end = _header(spki, a_start)
    oid = spki[a_start:o_end]
    if oid == _EC_OID:
        size = _EC_CURVES.get(spki[o_end:a_end])
        return ("ec", size) if size else None
    if oid == _ED25519_OID:
        return "ed25519", 256
    if oid == _ED448_OID:
        return "ed448", 456
    if oid == _RSA_OID:
        _, b_start, _ = _header(spki, a_end)  # BIT STRING: one byte of unused bits, then RSAPublicKey
        _, r_start, _ = _header(spki, b_start + 1)
        _, n_start, n_end = _header(spki, r_start)
        modulus = spki[n_start:n_end].lstrip(b"\x00")
        return ("rsa", (len(modulus) - 1) * 8 + modulus[0].bit_length()) if modulus else None
    return None


def _key(cert: x509.Certificate, spki: bytes) -> tuple[str, int]:
    quick = _key_from_spki(spki)
    if quick is not None:
        return quick
    try:
        key = cert.public_key()
    except (ValueError, TypeError, NotImplementedError, UnsupportedAlgorithm):
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


@dataclass(frozen=True, slots=True)
class _Extensions:
    """What KeyChest reads from the extensions."""

    dns: list[str]  # dNSName values as written (not normalised yet)
    ips: list[str]
    is_ca: bool
    is_precertificate: bool
    issuer_key_id: str
    subject_key_id: str
    has_san: bool = False


def _whole(value: bytes, tag: int) -> tuple[int, int]:
    """(content start, end) of `value` when it is exactly one DER element with `tag`."""
    found, start, end = _header(value, 0)
    if found != tag or end != len(value):
        raise CertificateParseError("unexpected extension shape")
    return start, end


def _san(value: bytes, tolerant: bool) -> tuple[list[str], list[str]] | None:
    """dNSName and iPAddress values of a SAN; None (strict) at any other form, which
    cryptography then reads and vets; tolerant: other forms and unreadable entries skipped."""
    dns: list[str] = []
    ips: list[str] = []
    pos, end = _whole(value, 0x30)
    while pos < end:
        tag, v_start, pos = _header(value, pos)
        size = pos - v_start
        if tag == 0x82 and (value[v_start:pos].isascii() or not tolerant):  # dNSName, IA5String
            dns.append(value[v_start:pos].decode("ascii"))
        elif tag == 0x87 and size == 4:  # iPAddress
            ips.append(str(ipaddress.IPv4Address(value[v_start:pos])))
        elif tag == 0x87 and size == 16:
            ips.append(ipaddress.IPv6Address(value[v_start:pos]).compressed)
        elif not tolerant:
            return None
    return dns, ips


def _basic_constraints(value: bytes) -> bool | None:
    """cA of a basicConstraints value; None for a shape CAs do not use."""
    pos, end = _whole(value, 0x30)
    if pos < end:
        tag, v_start, v_end = _header(value, pos)
        if tag == 0x01:  # cA BOOLEAN (DER: 0x00 or 0xff)
            if value[v_start:v_end] not in (b"\x00", b"\xff"):
                return None
            return value[v_start] == 0xFF
        if tag != 0x02:  # only pathLenConstraint: cA defaults to FALSE
            return None
    return False


def _key_identifier(value: bytes) -> str | None:
    """keyIdentifier [0] of an authority key identifier; None for the rare issuer/serial form."""
    pos, end = _whole(value, 0x30)
    if pos < end:
        tag, v_start, v_end = _header(value, pos)
        if tag != 0x80:
            return None
        return value[v_start:v_end].hex()
    return ""


def _subject_key_identifier(value: bytes) -> str:
    start, end = _whole(value, 0x04)
    return value[start:end].hex()


T = TypeVar("T")


def _read(reader: Callable[[bytes], T | None], value: bytes) -> T | None:
    try:
        return reader(value)
    except (CertificateParseError, UnicodeDecodeError, ValueError):
        return None


class _Unusual(Exception):
    """An extension in a shape `_read_extensions` leaves to cryptography."""


def _read_extensions(found: dict[bytes, bytes], *, tolerant: bool = False) -> _Extensions | None:
    """The extensions from their DER, for the shapes CAs use; None (strict) for anything else.

    None sends the certificate through cryptography's decoder (`_decode_extensions`), which has
    the last word on unusual or malformed values. `tolerant` is for a certificate cryptography
    cannot decode every extension of: what can be read is, the rest keeps its default.
    """

    def get(oid: bytes, reader: Callable[[bytes], T | None], default: T) -> T:
        value = found.get(oid)
        if value is None:
            return default
        got = _read(reader, value)
        if got is None:
            if not tolerant:
                raise _Unusual
            return default
        return got

    try:
        empty: tuple[list[str], list[str]] = ([], [])
        dns, ips = get(_SAN_OID, lambda v: _san(v, tolerant), empty)
        is_ca = get(_BASIC_CONSTRAINTS_OID, _basic_constraints, False)
        aki = get(_AKI_OID, _key_identifier, "")
        ski = get(_SKI_OID, _subject_key_identifier, "")
        # The poison is an ASN.1 NULL.
        poison = get(_POISON_OID, lambda v: True if v == b"\x05\x00" else None, _POISON_OID in found)
    except _Unusual:
        return None
    return _Extensions(dns, ips, is_ca, poison, aki, ski, _SAN_OID in found)


def _decode_extensions(cert: x509.Certificate) -> _Extensions:
    """The same through cryptography's decoder (which raises on malformed values)."""
    by_oid = {ext.oid: ext.value for ext in cert.extensions}
    san = by_oid.get(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    dns: list[str] = []
    ips: list[str] = []
    if isinstance(san, x509.SubjectAlternativeName):
        dns = list(san.get_values_for_type(x509.DNSName))
        ips = [
            ip.compressed
            for ip in san.get_values_for_type(x509.IPAddress)
            if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
        ]
    bc = by_oid.get(ExtensionOID.BASIC_CONSTRAINTS)
    aki = by_oid.get(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    ski = by_oid.get(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    aki_bytes = aki.key_identifier if isinstance(aki, x509.AuthorityKeyIdentifier) else None
    return _Extensions(
        dns=dns,
        ips=ips,
        is_ca=bool(isinstance(bc, x509.BasicConstraints) and bc.ca),
        is_precertificate=ExtensionOID.PRECERT_POISON in by_oid,
        issuer_key_id=aki_bytes.hex() if aki_bytes else "",
        subject_key_id=ski.digest.hex() if isinstance(ski, x509.SubjectKeyIdentifier) else "",
        has_san=san is not None,
    )


def _common_names(cert: x509.Certificate) -> list[str]:
    try:
        attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:  # an unreadable subject (invalid UTF-8, an unknown string type)
        return []
    return [a.value if isinstance(a.value, str) else a.value.decode("utf-8", "replace") for a in attrs]


def _names(cert: x509.Certificate, ext: _Extensions) -> tuple[tuple[str, ...], tuple[str, ...]]:
    dns: dict[str, None] = {}
    for raw in ext.dns:
        name = normalise_certificate_name(raw)
        if name is not None:
            dns[name] = None
    ips = dict.fromkeys(ext.ips)
    if not dns and not ips:
        # Old certificates (and some private CAs) name the host only in the subject CN: kept for
        # search and display (clients do not match it: kcproto.identity). Only a valid IP
        # address or a host name of two labels or more ("configuration" is not a host).
        for value in _common_names(cert):
            ip = ip_literal(value) if value else None
            if ip is not None:
                ips[ip] = None
                continue
            name = normalise_certificate_name(value) if value else None
            if name is not None and "." in name and ip_literal(name) is None:
                dns[name] = None
    return tuple(dns), tuple(ips)


# Signature algorithms cryptography has no name for; stored by name so weak ones read as such.
_SIGNATURE_NAMES = {
    "1.2.840.113549.1.1.2": "md2WithRSAEncryption",
    "1.2.840.113549.1.1.3": "md4WithRSAEncryption",
    "1.2.840.113549.2.5": "md5WithRSAEncryption",  # the bare MD5 digest OID, used so by old CAs
    "1.3.14.3.2.3": "md5WithRSA",  # OIW
    "1.3.14.3.2.15": "shaWithRSASignature",  # OIW, SHA-0
    "1.3.14.3.2.27": "dsaWithSHA1",  # OIW
    "1.3.14.3.2.29": "sha1WithRSASignature",  # OIW: the alternate SHA-1 with RSA OID
}


def signature_name(oid: x509.ObjectIdentifier) -> str:
    name = getattr(oid, "_name", "") or ""
    if name and name != "Unknown OID":
        return name
    return _SIGNATURE_NAMES.get(oid.dotted_string, oid.dotted_string)


# Issuer names repeat across millions of certificates: render each once.
_issuer_text: dict[bytes, str] = {}


def parse_certificate(data: bytes | str) -> ParsedCertificate:
    """Parse one certificate (DER, or PEM text/bytes). Raises CertificateParseError if malformed.

    Every certificate cryptography can load and whose validity can be read is accepted: a key
    type cryptography does not know is stored as "unknown", an unreadable subject or issuer as
    "(unreadable name)", and an extension cryptography cannot decode (a broken SCT list, a
    duplicate extension, an unsupported name form) leaves `extension_error` set while the rest
    is read from the DER (the scanner reports it as malformed_certificate). The values KeyChest
    stores are read in one walk over the TBSCertificate, which also gives the issuance key,
    instead of through cryptography's Python objects.
    """
    der = to_der(data)
    try:
        cert = x509.load_der_x509_certificate(der)
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        tbs = _walk_tbs(_tbs_of(der))
    except CertificateParseError:
        raise
    except Exception as exc:  # noqa: BLE001
        # Certificates are attacker-controlled: whatever cryptography trips on is one kind of error.
        raise CertificateParseError(f"malformed certificate: {exc.__class__.__name__}: {exc}") from None
    try:
        cert.extensions  # noqa: B018 - decoding them all is the check (cryptography caches the result)
        extension_error = ""
    except Exception as exc:  # noqa: BLE001 - ValueError, DuplicateExtension, UnsupportedGeneralNameType, ...
        extension_error = f"{exc.__class__.__name__}: {exc}"[:300]
    if extension_error:
        ext = _read_extensions(tbs.extensions, tolerant=True) or _Extensions([], [], False, False, "", "")
    else:
        ext = _read_extensions(tbs.extensions) or _decode_extensions(cert)
    dns, ips = _names(cert, ext)
    key_type, key_size = _key(cert, tbs.spki)
    issuer = _issuer_text.get(tbs.issuer)
    if issuer is None:
        if len(_issuer_text) > 20000:
            _issuer_text.clear()
        issuer = _issuer_text[tbs.issuer] = _name_text(cert, "issuer")
    serial = cert.serial_number
    return ParsedCertificate(
        der=der,
        sha256=hashlib.sha256(der).hexdigest(),
        serial=format(serial, "x") if serial >= 0 else "-" + format(-serial, "x"),
        issuer=issuer,
        subject=_name_text(cert, "subject"),
        issuer_key_id=ext.issuer_key_id,
        subject_key_id=ext.subject_key_id,
        not_before=not_before,
        not_after=not_after,
        key_type=key_type,
        key_size=key_size,
        signature_algorithm=signature_name(cert.signature_algorithm_oid),
        is_ca=ext.is_ca,
        is_precertificate=ext.is_precertificate,
        issuance_key=hashlib.sha256(tbs.stripped).hexdigest(),
        names=dns,
        ip_addresses=ips,
        san_dns=tuple(ext.dns),
        san_ips=tuple(ext.ips),
        has_san=ext.has_san,
        extension_error=extension_error,
    )


def _name_text(cert: x509.Certificate, which: str) -> str:
    try:
        name: x509.Name = getattr(cert, which)
        return name.rfc4514_string()[:1000]
    except (ValueError, UnicodeError):
        return "(unreadable name)"
