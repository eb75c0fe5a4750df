"""Certificate uploads never answer 500: odd certificates from pyca's cryptography-vectors are
stored when cryptography can read them, and anything else is a 400 with a clear message."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.api.conftest import key_client

pytestmark = pytest.mark.django_db
VECTORS = Path(os.path.dirname(cryptography_vectors.__file__)) / "x509"


def _pem(name: str) -> str:
    data = (VECTORS / name).read_bytes()
    if b"-----BEGIN" in data:
        return data.decode("ascii", "replace")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.PEM).decode()


@pytest.mark.parametrize(
    "name",
    [
        "e-trust.ru.der",  # a GOST key cryptography cannot use
        "custom/unsupported_subject_public_key_info.pem",
        "custom/invalid_utf8_common_name.pem",
        "verisign_md2_root.pem",
        "custom/two_basic_constraints.pem",
        "badssl-sct-none-hash.der",
        "san_x400address.der",
    ],
)
def test_odd_but_readable_certificates_are_stored(people, alice_key, alice_client, name: str) -> None:
    v10 = key_client(alice_key).post("/api/v1.0/certificate/add", {"certificate": _pem(name)}, format="json")
    assert v10.status_code == 200 and v10.json()["status"] == "success", v10.content
    v1 = alice_client.post("/api/v1/certificates/", {"certificate": _pem(name)}, content_type="application/json")
    assert v1.status_code in (200, 201), v1.content


@pytest.mark.parametrize("name", ["custom/invalid_version.pem", "badasn1time.pem", "custom/ecdsa_null_alg.pem"])
def test_unreadable_certificates_are_a_400_with_a_message(people, alice_key, alice_client, name: str) -> None:
    v10 = key_client(alice_key).post("/api/v1.0/certificate/add", {"certificate": _pem(name)}, format="json")
    assert v10.status_code == 400 and v10.json()["status"] == "invalid-certificate"
    assert "cryptography can read" in v10.json()["detail"]
    v1 = alice_client.post("/api/v1/certificates/", {"certificate": _pem(name)}, content_type="application/json")
    assert v1.status_code == 400, v1.content
    assert "cryptography can read" in str(v1.json())
