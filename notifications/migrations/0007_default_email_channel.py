"""Every team that never had a channel gets the "email every member" channel new teams start
with (issue 14): without it, its alerts went nowhere. A team that deleted its channels keeps that
choice (its deleted rows are still there), and nothing is removed."""

from __future__ import annotations

import secrets
import uuid

from django.db import migrations


def add_default_channels(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    Team = apps.get_model("accounts", "Team")
    Channel = apps.get_model("notifications", "Channel")
    without = Team.objects.exclude(pk__in=Channel.objects.values("team_id"))
    Channel.objects.bulk_create(
        [
            Channel(
                team_id=team_id,
                uuid=uuid.uuid4(),
                kind="email",
                name="Email every member",
                email_all_members=True,
                secret=secrets.token_hex(32),
            )
            for team_id in without.values_list("pk", flat=True).iterator()
        ],
        batch_size=1000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("notifications", "0006_alter_event_kind"),
    ]

    # Reversing keeps the channels: they may have deliveries by then, and a channel is data.
    operations = [migrations.RunPython(add_default_channels, migrations.RunPython.noop)]
