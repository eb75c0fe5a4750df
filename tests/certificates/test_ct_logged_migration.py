"""The data migration that records which stored certificates were read from a CT log (issue 22
item 2): every row kept, the flag derived from the sources the store already had."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps

from certificates.models import Certificate, CertificateName, CertificateSource, SourceKind
from certificates.services import certificate_store_der, certificates_thin
from lab.ctlog.certgen import Issuer, issue

pytestmark = pytest.mark.django_db
migration = importlib.import_module("certificates.migrations.0008_certificate_ct_logged")


@pytest.mark.parametrize("batch", [50_000, 2])
def test_the_flag_comes_from_ct_sources_precertificates_and_thinned_rows(lab_ca: Issuer, monkeypatch, batch) -> None:
    monkeypatch.setattr(migration, "BATCH", batch)
    long_ago = datetime.now(UTC) - timedelta(days=900)
    logged = issue(lab_ca, ["www.example.com"])
    pre = certificate_store_der(der=logged.precertificate, source=SourceKind.CT, source_ref="log:1")
    final = certificate_store_der(der=logged.certificate, source=SourceKind.SCAN, source_ref="www.example.com:443")
    CertificateSource.objects.create(certificate=final, kind=SourceKind.CT, ref="log:2")
    scanned = certificate_store_der(
        der=issue(lab_ca, ["appliance.example.com"]).certificate, source=SourceKind.SCAN, source_ref="appliance:443"
    )
    uploaded = certificate_store_der(
        der=issue(lab_ca, ["intranet.example.com"]).certificate, source=SourceKind.UPLOAD, source_ref="team:x"
    )
    old_ct = certificate_store_der(
        der=issue(lab_ca, ["old.example.com"], not_before=long_ago).certificate, source=SourceKind.CT, source_ref="l:3"
    )
    old_scan = certificate_store_der(
        der=issue(lab_ca, ["old-scan.example.com"], not_before=long_ago).certificate,
        source=SourceKind.SCAN,
        source_ref="old-scan:443",
    )
    certificates_thin(retention_days=30)  # drops the old CT certificate's only source
    assert not CertificateSource.objects.filter(certificate=old_ct).exists()
    # As the rows were before the migration: nobody flagged.
    Certificate.objects.update(ct_logged=False)
    before = (Certificate.objects.count(), CertificateName.objects.count(), CertificateSource.objects.count())
    migration.mark_ct_logged(apps, None)
    flags = dict(Certificate.objects.values_list("pk", "ct_logged"))
    assert flags == {
        pre.pk: True,
        final.pk: True,
        scanned.pk: False,
        uploaded.pk: False,
        old_ct.pk: True,
        old_scan.pk: False,
    }
    assert (Certificate.objects.count(), CertificateName.objects.count(), CertificateSource.objects.count()) == before
