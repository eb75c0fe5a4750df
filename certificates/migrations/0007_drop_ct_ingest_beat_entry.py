"""The beat schedule no longer runs CT ingestion (the `ct` follower process does, as soon as a
log's head moves). django-celery-beat keeps schedule entries it once read from the settings, so
the old 30-second entry is removed here; otherwise beat would keep sending a task that no longer
exists."""

from __future__ import annotations

from django.db import migrations


def drop_entry(apps, schema_editor):  # type: ignore[no-untyped-def]
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name="certificates-ct-ingest").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("certificates", "0006_ct_leases"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(drop_entry, migrations.RunPython.noop)]
