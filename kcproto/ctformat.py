"""Certificate Transparency wire formats: RFC 6962 leaves and STHs, static-ct-api tiles and checkpoints.

Pure: no Django, no network. Both the ingester and the lab log use these, so a test of one is a
test of the other's counterpart.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

X509_ENTRY = 0
PRECERT_ENTRY = 1
_HASH_SHA256 = 4
_SIG_RSA = 1
_SIG_ECDSA = 3
# static-ct-api: the checkpoint signature is an RFC 6962 STH signature wrapped in a note (type 0x05).
_NOTE_SIG_RFC6962 = 0x05


class FormatError(ValueError):
    """Bytes that do not follow the CT wire format."""


class SignatureError(ValueError):
    """A tree head whose signature does not verify with the log's key."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One parsed log entry: the certificate to store (for a precert, the precertificate) and its chain."""

    index: int
    leaf_hash: bytes
    timestamp: int
    entry_type: int
    # The certificate (x509_entry) or the full precertificate with its poison (precert_entry).
    der: bytes
    # DER of the issuing chain (RFC 6962) or SHA-256 fingerprints of it (static-ct-api).
    chain: tuple[bytes, ...]
    chain_fingerprints: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class BadEntry:
    """An entry that could not be read; its leaf hash still counts for the Merkle tree when known."""

    index: int
    leaf_hash: bytes | None
    reason: str


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A verified (or to-be-verified) signed tree head / checkpoint."""

    size: int
    root: bytes
    timestamp: int


# --- reading TLS-encoded structures ----------------------------------------------------------
class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise FormatError("truncated structure")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, len_bytes: int) -> bytes:
        return self.take(self.uint(len_bytes))

    def done(self) -> bool:
        return self.pos == len(self.data)


# The entry readers below slice the bytes directly rather than through _Reader: they run for
# every entry of every log, and a method call per field cost more than the rest of the parse.
def _vector(data: bytes, pos: int, len_bytes: int) -> tuple[bytes, int]:
    """A TLS opaque vector with a `len_bytes` length prefix at `pos`, and the position after it."""
    start = pos + len_bytes
    if start > len(data):
        raise FormatError("truncated structure")
    end = start + int.from_bytes(data[pos:start], "big")
    if end > len(data):
        raise FormatError("truncated structure")
    return data[start:end], end


def _read_timestamped_entry(data: bytes, pos: int) -> tuple[int, int, bytes, bytes, int]:
    """(timestamp, entry_type, certificate-or-tbs, extensions, end) of a TimestampedEntry at `pos`."""
    if pos + 10 > len(data):
        raise FormatError("truncated structure")
    timestamp = int.from_bytes(data[pos : pos + 8], "big")
    entry_type = int.from_bytes(data[pos + 8 : pos + 10], "big")
    pos += 10
    if entry_type == PRECERT_ENTRY:
        pos += 32  # issuer_key_hash (bounds checked by the next read)
    elif entry_type != X509_ENTRY:
        raise FormatError(f"unknown entry type {entry_type}")
    signed, pos = _vector(data, pos, 3)
    extensions, pos = _vector(data, pos, 2)
    return timestamp, entry_type, signed, extensions, pos


def parse_rfc6962_entry(index: int, leaf_input: bytes, extra_data: bytes) -> LogEntry:
    """A get-entries item (MerkleTreeLeaf + extra_data). Raises FormatError."""
    if leaf_input[:2] != b"\x00\x00":
        raise FormatError("not a v1 timestamped_entry leaf")
    timestamp, entry_type, signed, _, end = _read_timestamped_entry(leaf_input, 2)
    if end != len(leaf_input):
        raise FormatError("trailing bytes after the leaf")
    if entry_type == X509_ENTRY:
        der = signed
        chain_bytes, _ = _vector(extra_data, 0, 3)
    else:
        der, pos = _vector(extra_data, 0, 3)  # PrecertChainEntry.pre_certificate
        chain_bytes, _ = _vector(extra_data, pos, 3)
    chain: list[bytes] = []
    pos = 0
    while pos < len(chain_bytes):
        cert, pos = _vector(chain_bytes, pos, 3)
        chain.append(cert)
    return LogEntry(
        index=index,
        leaf_hash=hashlib.sha256(b"\x00" + leaf_input).digest(),
        timestamp=timestamp,
        entry_type=entry_type,
        der=der,
        chain=tuple(chain),
    )


def encode_timestamped_entry(
    timestamp: int, entry_type: int, signed: bytes, *, issuer_key_hash: bytes = b"", extensions: bytes = b""
) -> bytes:
    body = struct.pack(">QH", timestamp, entry_type)
    if entry_type == PRECERT_ENTRY:
        body += issuer_key_hash
    return body + len(signed).to_bytes(3, "big") + signed + len(extensions).to_bytes(2, "big") + extensions


def encode_asn1_chain(chain: list[bytes]) -> bytes:
    body = b"".join(len(c).to_bytes(3, "big") + c for c in chain)
    return len(body).to_bytes(3, "big") + body


def leaf_index_extension(index: int) -> bytes:
    """static-ct-api's leaf_index CT extension (type 0, a 40-bit index)."""
    return b"\x00" + (5).to_bytes(2, "big") + index.to_bytes(5, "big")


def parse_data_tile(data: bytes, first_index: int, count: int) -> list[LogEntry | BadEntry]:
    """The `count` TileLeaf entries of a static-ct-api data tile starting at `first_index`.

    Raises FormatError if the tile itself is cut short (a truncated tile is a fetch failure to
    retry, not a bad entry). A leaf whose certificate is unreadable is still a leaf here; the
    certificate is checked when stored.
    """
    out: list[LogEntry | BadEntry] = []
    pos = 0
    for i in range(count):
        start = pos
        timestamp, entry_type, signed, extensions, pos = _read_timestamped_entry(data, pos)
        leaf = b"\x00\x00" + data[start:pos]
        if entry_type == PRECERT_ENTRY:
            der, pos = _vector(data, pos, 3)
        else:
            der = signed
        fps_raw, pos = _vector(data, pos, 2)
        if len(fps_raw) % 32:
            raise FormatError("bad fingerprint list")
        index = first_index + i
        ext_index = _leaf_index_from_extensions(extensions)
        lh = hashlib.sha256(b"\x00" + leaf).digest()
        if ext_index is not None and ext_index != index:
            out.append(BadEntry(index=index, leaf_hash=lh, reason=f"leaf_index extension says {ext_index}"))
            continue
        out.append(
            LogEntry(
                index=index,
                leaf_hash=lh,
                timestamp=timestamp,
                entry_type=entry_type,
                der=der,
                chain=(),
                chain_fingerprints=tuple(fps_raw[j : j + 32] for j in range(0, len(fps_raw), 32)),
            )
        )
    if pos != len(data):
        raise FormatError("trailing bytes after the last tile leaf")
    return out


def _leaf_index_from_extensions(ext: bytes) -> int | None:
    r = _Reader(ext)
    while not r.done():
        kind = r.uint(1)
        value = r.vector(2)
        if kind == 0 and len(value) == 5:
            return int.from_bytes(value, "big")
    return None


def encode_tile_leaf(timestamped_entry: bytes, *, precertificate: bytes | None, fingerprints: list[bytes]) -> bytes:
    out = timestamped_entry
    if precertificate is not None:
        out += len(precertificate).to_bytes(3, "big") + precertificate
    fps = b"".join(fingerprints)
    return out + len(fps).to_bytes(2, "big") + fps


def tile_path(level: int | str, index: int, width: int = 256) -> str:
    """c2sp.org/tlog-tiles path: tile/<L>/x001/x234/067[.p/<W>]."""
    digits = f"{index:d}"
    digits = digits.zfill((len(digits) + 2) // 3 * 3)
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    path = "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])
    suffix = f".p/{width}" if width < 256 else ""
    return f"tile/{level}/{path}{suffix}"


# --- signatures -----------------------------------------------------------------------------
def sth_signature_input(timestamp: int, size: int, root: bytes) -> bytes:
    """RFC 6962 §3.5 TreeHeadSignature: version v1, signature_type tree_hash."""
    return struct.pack(">BBQQ", 0, 1, timestamp, size) + root


def log_id(public_key_der: bytes) -> bytes:
    return hashlib.sha256(public_key_der).digest()


def verify_digitally_signed(public_key_der: bytes, signed: bytes, digitally_signed: bytes) -> None:
    """Verify a TLS DigitallySigned (hash alg, sig alg, uint16 length, signature). Raises SignatureError."""
    if len(digitally_signed) < 4:
        raise SignatureError("signature too short")
    hash_alg, sig_alg = digitally_signed[0], digitally_signed[1]
    length = int.from_bytes(digitally_signed[2:4], "big")
    sig = digitally_signed[4:]
    if hash_alg != _HASH_SHA256 or len(sig) != length:
        raise SignatureError("unsupported or malformed signature")
    try:
        key = load_der_public_key(public_key_der)
    except ValueError as exc:
        raise SignatureError(f"unreadable log key: {exc}") from None
    try:
        if sig_alg == _SIG_ECDSA and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, signed, ec.ECDSA(hashes.SHA256()))
        elif sig_alg == _SIG_RSA and isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise SignatureError("signature algorithm does not match the log key")
    except InvalidSignature:
        raise SignatureError("tree head signature does not verify") from None


def sign_digitally_signed(private_key: ec.EllipticCurvePrivateKey, signed: bytes) -> bytes:
    sig = private_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    return bytes([_HASH_SHA256, _SIG_ECDSA]) + len(sig).to_bytes(2, "big") + sig


def verify_sth_json(public_key_der: bytes, sth: dict[str, object]) -> TreeHead:
    """Parse and verify a get-sth answer. Raises FormatError / SignatureError."""
    try:
        size = int(sth["tree_size"])  # type: ignore[call-overload]
        timestamp = int(sth["timestamp"])  # type: ignore[call-overload]
        root = base64.b64decode(str(sth["sha256_root_hash"]), validate=True)
        signature = base64.b64decode(str(sth["tree_head_signature"]), validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"malformed STH: {exc}") from None
    if len(root) != 32 or size < 0:
        raise FormatError("malformed STH root or size")
    verify_digitally_signed(public_key_der, sth_signature_input(timestamp, size, root), signature)
    return TreeHead(size=size, root=root, timestamp=timestamp)


def note_key_id(origin: str, public_key_der: bytes) -> bytes:
    return hashlib.sha256(origin.encode() + b"\n" + bytes([_NOTE_SIG_RFC6962]) + public_key_der).digest()[:4]


def verify_checkpoint(text: bytes, *, origin: str, public_key_der: bytes) -> TreeHead:
    """Parse a static-ct-api checkpoint (a signed note) and verify the log's RFC 6962 note signature."""
    try:
        body, _, sigs = text.decode("utf-8").partition("\n\n")
    except UnicodeDecodeError:
        raise FormatError("checkpoint is not UTF-8") from None
    lines = body.split("\n")
    if len(lines) < 3 or lines[0] != origin:
        raise FormatError("checkpoint origin does not match the log")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except ValueError:
        raise FormatError("malformed checkpoint") from None
    if len(root) != 32 or size < 0:
        raise FormatError("malformed checkpoint root or size")
    want = note_key_id(origin, public_key_der)
    for line in sigs.split("\n"):
        if not line.startswith("\u2014 "):
            continue
        name, _, b64 = line[2:].rpartition(" ")
        if name != origin:
            continue
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError:
            continue
        if len(raw) < 12 or raw[:4] != want:
            continue
        timestamp = int.from_bytes(raw[4:12], "big")
        verify_digitally_signed(public_key_der, sth_signature_input(timestamp, size, root), raw[12:])
        return TreeHead(size=size, root=root, timestamp=timestamp)
    raise SignatureError("no signature by the log's key on the checkpoint")


def sign_checkpoint(
    private_key: ec.EllipticCurvePrivateKey,
    *,
    origin: str,
    public_key_der: bytes,
    size: int,
    root: bytes,
    timestamp: int,
) -> bytes:
    body = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
    sig = sign_digitally_signed(private_key, sth_signature_input(timestamp, size, root))
    blob = note_key_id(origin, public_key_der) + timestamp.to_bytes(8, "big") + sig
    return f"{body}\n\u2014 {origin} {base64.b64encode(blob).decode()}\n".encode()
