"""notification_email takes effect once its holder confirms it (security finding 7). Addresses
already set were receiving mail before the rule; they keep it (marked confirmed), every row kept.
Only new addresses are asked."""

from django.db import migrations, models
from django.utils import timezone


def confirm_existing(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    User = apps.get_model("accounts", "User")
    User.objects.exclude(notification_email="").update(notification_email_confirmed_at=timezone.now())


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="notification_email_confirmed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(confirm_existing, migrations.RunPython.noop),
    ]
