"""`legacy_tls` names versions "TLS 1.0" / "TLS 1.1" (it held OpenSSL's "TLSv1" / "TLSv1.1").

Data only: every stored list is rewritten in place (history rows too), so a reader sees one
spelling. The scanner's state digest keeps OpenSSL's spelling, so unchanged servers stay
unchanged.
"""

from django.db import migrations

FORWARD = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1"}
BACKWARD = {new: old for old, new in FORWARD.items()}


def _rename(apps, names):
    ScanResult = apps.get_model("monitors", "ScanResult")
    batch = []
    rows = ScanResult.objects.exclude(legacy_tls=[]).only("id", "legacy_tls").iterator(chunk_size=2000)
    for row in rows:
        renamed = [names.get(v, v) for v in row.legacy_tls]
        if renamed != row.legacy_tls:
            row.legacy_tls = renamed
            batch.append(row)
        if len(batch) >= 2000:
            ScanResult.objects.bulk_update(batch, ["legacy_tls"])
            batch = []
    ScanResult.objects.bulk_update(batch, ["legacy_tls"])


def forward(apps, schema_editor):
    _rename(apps, FORWARD)


def backward(apps, schema_editor):
    _rename(apps, BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("monitors", "0006_domain_registrations")]

    operations = [migrations.RunPython(forward, backward)]
