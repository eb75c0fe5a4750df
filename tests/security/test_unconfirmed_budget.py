"""Security finding 5: anonymous storage exhaustion. A key claimed with no login holds at most
KEYCHEST_UNCONFIRMED_MAX_ITEMS items and KEYCHEST_UNCONFIRMED_MAX_BYTES bytes until its owner
confirms it, and every way a certificate arrives (file, form field, JSON, /api/v1) meets the same
64 KiB cap."""

from __future__ import annotations

import pytest
from django.db.models import Sum
from django.db.models.functions import Length
from django.test import TestCase
from rest_framework.test import APIClient

from api.models import PendingEnrolment, UploadedCertificate
from kcproto.x509 import MAX_CERTIFICATE_BYTES
from lab.ctlog.certgen import issue
from tests.api.conftest import key_client, pem_of
from tests.conftest import People

pytestmark = pytest.mark.django_db


def _claimed_key(email: str = "mallory@example.net") -> str:
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = APIClient(REMOTE_ADDR="198.51.100.66").get(f"/api/v1.0/access/claim/{email}")
    assert response.status_code == 201
    return response.json()["api_key"]


def _big_pem(lab_issuer, size: int) -> str:  # type: ignore[no-untyped-def]
    """A real certificate whose PEM is at least `size` bytes (many long names)."""
    label = "n" * 50
    count = size // 60 + 1
    names = ["big.example", *(f"{label}{i}.big.example" for i in range(count))]
    pem = pem_of(issue(lab_issuer, names).certificate)
    assert len(pem) >= size
    return pem


def _held_bytes() -> int:
    return PendingEnrolment.objects.aggregate(total=Sum(Length("der")))["total"] or 0


@pytest.mark.parametrize("how", ["form-field", "json", "file"])
def test_an_oversized_certificate_is_refused_however_it_arrives(smtp, people: People, lab_issuer, how: str) -> None:  # type: ignore[no-untyped-def]
    secret = _claimed_key()
    pem = _big_pem(lab_issuer, MAX_CERTIFICATE_BYTES + 1024)
    client = key_client(secret)
    if how == "form-field":
        response = client.post("/api/v1.0/certificate/add", {"certificate": pem})
    elif how == "json":
        response = client.post("/api/v1.0/certificate/add", {"certificate": pem}, format="json")
    else:
        from django.core.files.uploadedfile import SimpleUploadedFile

        upload = SimpleUploadedFile("cert.pem", pem.encode(), content_type="application/x-pem-file")
        response = client.post("/api/v1.0/certificate/add", {"certificate": upload}, format="multipart")
    assert response.status_code == 413, response.content[:200]
    assert response.json()["status"] == "too-large"
    assert not PendingEnrolment.objects.exists()


def test_v1_uploads_meet_the_same_cap(people: People, alice_key: str, lab_issuer) -> None:  # type: ignore[no-untyped-def]
    pem = _big_pem(lab_issuer, MAX_CERTIFICATE_BYTES + 1024)
    response = key_client(alice_key).post("/api/v1/certificates/", {"certificate": pem}, format="json")
    assert response.status_code == 400
    assert not UploadedCertificate.objects.exists()


def test_a_certificate_just_under_the_cap_is_taken(smtp, people: People, lab_issuer) -> None:  # type: ignore[no-untyped-def]
    secret = _claimed_key()
    pem = _big_pem(lab_issuer, MAX_CERTIFICATE_BYTES // 2)
    assert len(pem) < MAX_CERTIFICATE_BYTES
    response = key_client(secret).post("/api/v1.0/certificate/add", {"certificate": pem})
    assert response.status_code == 200 and response.json()["status"] == "success"


def test_an_unconfirmed_key_holds_a_bounded_number_of_bytes(smtp, people: People, lab_issuer, settings) -> None:  # type: ignore[no-untyped-def]
    settings.KEYCHEST_UNCONFIRMED_MAX_BYTES = 100_000
    secret = _claimed_key()
    client = key_client(secret)
    statuses = []
    for _ in range(6):
        pem = _big_pem(lab_issuer, 40_000)  # a new key and serial each time: distinct certificates
        statuses.append(client.post("/api/v1.0/certificate/add", {"certificate": pem}).json()["status"])
    assert "success" in statuses and statuses[-1] == "too-many"
    assert _held_bytes() <= 100_000


def test_an_unconfirmed_key_holds_a_bounded_number_of_items(smtp, people: People, lab_issuer, settings) -> None:  # type: ignore[no-untyped-def]
    settings.KEYCHEST_UNCONFIRMED_MAX_ITEMS = 3
    client = key_client(_claimed_key())
    for i in range(2):
        assert client.post("/api/v1.0/servers/add", {"domain": f"s{i}.example.com"}, format="json").status_code == 200
    cert = pem_of(issue(lab_issuer, ["c.example.com"]).certificate)
    assert client.post("/api/v1.0/certificate/add", {"certificate": cert}).json()["status"] == "success"
    refused = client.post("/api/v1.0/servers/add", {"domain": "s9.example.com"}, format="json")
    assert refused.status_code == 429 and refused.json()["status"] == "too-many"
    # The same item again is no new item: it is still answered.
    again = client.post("/api/v1.0/servers/add", {"domain": "s0.example.com"}, format="json")
    assert again.json()["status"] == "already-inserted"
    assert PendingEnrolment.objects.count() == 3


def test_the_budget_is_per_person_not_per_key(smtp, people: People, settings) -> None:  # type: ignore[no-untyped-def]
    """A person's unconfirmed keys share one budget, so more keys hold no more."""
    settings.KEYCHEST_UNCONFIRMED_MAX_ITEMS = 2
    first, second = _claimed_key(), _claimed_key()
    assert (
        key_client(first).post("/api/v1.0/servers/add", {"domain": "a.example.com"}, format="json").status_code == 200
    )
    assert (
        key_client(first).post("/api/v1.0/servers/add", {"domain": "b.example.com"}, format="json").status_code == 200
    )
    refused = key_client(second).post("/api/v1.0/servers/add", {"domain": "c.example.com"}, format="json")
    assert refused.status_code == 429
