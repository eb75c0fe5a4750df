"""Certificate.ct_logged: whether a certificate was read from a CT log (issue 22 item 2, issue 14 item 5).

Every row is kept; the flag is derived from what the store already recorded:
- a "ct" source row (one per log entry the ingester read);
- a precertificate (only CT logs carry them);
- a thinned certificate with no source left: thinning drops only the per-entry CT sources,
  so one that was never scanned or uploaded was read from a log.
A thinned certificate that was also scanned or uploaded may have been logged too, but nothing
says so any more: it stays private (the safe side) until a log serves it again.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models, transaction
from django.db.models import Exists, OuterRef, Q


# Rows per UPDATE: the store may hold many millions of certificates, and the migration is not
# atomic, so each batch commits on its own (an interrupted run simply marks the rest when rerun).
BATCH = 50_000


def mark_ct_logged(apps: Any, schema_editor: Any) -> None:
    certificate = apps.get_model("certificates", "Certificate")
    source = apps.get_model("certificates", "CertificateSource")
    read_from_a_log = Exists(source.objects.filter(certificate=OuterRef("pk"), kind="ct"))
    any_source = Exists(source.objects.filter(certificate=OuterRef("pk")))
    logged = read_from_a_log | Q(is_precertificate=True) | (Q(thinned=True) & ~any_source)
    last = certificate.objects.order_by("-id").values_list("id", flat=True).first() or 0
    for start in range(0, last + 1, BATCH):
        with transaction.atomic():
            certificate.objects.filter(logged, id__gte=start, id__lt=start + BATCH, ct_logged=False).update(
                ct_logged=True
            )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("certificates", "0007_drop_ct_ingest_beat_entry"),
    ]

    operations = [
        migrations.AddField(
            model_name="certificate",
            name="ct_logged",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.RunPython(mark_ct_logged, migrations.RunPython.noop, elidable=True),
    ]
