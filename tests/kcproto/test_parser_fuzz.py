"""Property tests: mutated certificates and mutated CT leaves never raise anything but the
parsers' documented errors (CertificateParseError, ctformat.FormatError)."""

from __future__ import annotations

import warnings
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcproto import ctformat
from kcproto.x509 import CertificateParseError, parse_certificate
from lab.ctlog.certgen import Issuance, issue, make_ca

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def _issuance() -> Issuance:
    root = make_ca("Fuzz Root")
    ca = make_ca("Fuzz CA", parent=root)
    return issue(ca, ["www.fuzz.example", "*.fuzz.example", "xn--bcher-kva.example"], ips=["192.0.2.9"])


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """`base` with a few random edits: flipped bits, replaced, inserted or deleted bytes, a cut."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "insert", "delete", "cut"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


def _parse_or_documented_error(der: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = parse_certificate(der)
        except CertificateParseError:
            return
    # Whatever is accepted is usable: aware dates, text names, a key type.
    assert parsed.not_before.tzinfo is not None and parsed.not_after.tzinfo is not None
    assert isinstance(parsed.subject, str) and isinstance(parsed.issuer, str)
    assert parsed.key_type
    assert all(isinstance(n, str) for n in parsed.names + parsed.san_dns)


@FUZZ
@given(data=st.data())
def test_mutated_certificates_raise_only_the_parse_error(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from([_issuance().certificate, _issuance().precertificate]))
    _parse_or_documented_error(data.draw(mutated(base)))


@FUZZ
@given(data=st.data())
def test_mutated_pem_raises_only_the_parse_error(data: st.DataObject) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = x509.load_der_x509_certificate(_issuance().certificate).public_bytes(Encoding.PEM)
    _parse_or_documented_error(data.draw(mutated(pem)))


def _rfc6962_item() -> tuple[bytes, bytes]:
    issuance = _issuance()
    leaf = b"\x00\x00" + ctformat.encode_timestamped_entry(1_700_000_000_000, ctformat.X509_ENTRY, issuance.certificate)
    return leaf, ctformat.encode_asn1_chain([issuance.issuer.der])


def _tile() -> bytes:
    issuance = _issuance()
    entry = ctformat.encode_timestamped_entry(
        1_700_000_000_000, ctformat.X509_ENTRY, issuance.certificate, extensions=ctformat.leaf_index_extension(0)
    )
    return ctformat.encode_tile_leaf(entry, precertificate=None, fingerprints=[b"\x11" * 32])


@FUZZ
@given(data=st.data())
def test_mutated_rfc6962_entries_raise_only_the_format_error(data: st.DataObject) -> None:
    leaf, extra = _rfc6962_item()
    leaf = data.draw(mutated(leaf)) if data.draw(st.booleans()) else leaf
    extra = data.draw(mutated(extra)) if data.draw(st.booleans()) else extra
    try:
        entry = ctformat.parse_rfc6962_entry(0, leaf, extra)
    except ctformat.FormatError:
        return
    _parse_or_documented_error(entry.der)


@FUZZ
@given(data=st.data())
def test_mutated_tiles_raise_only_the_format_error(data: st.DataObject) -> None:
    try:
        entries = ctformat.parse_data_tile(data.draw(mutated(_tile())), 0, 1)
    except ctformat.FormatError:
        return
    for entry in entries:
        if isinstance(entry, ctformat.LogEntry):
            _parse_or_documented_error(entry.der)
