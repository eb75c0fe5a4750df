"""Models that moved between apps (issue 20) keep every row: migrate back to before the move,
write rows through the old app's historical models, migrate forward, read them in the new app."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from events.models import Event
from notifications.models import DeliveryItem

BEFORE_EVENTS_MOVE = [("events", None), ("notifications", "0007_default_email_channel")]
STATE_BEFORE_EVENTS_MOVE = [
    ("notifications", "0007_default_email_channel"),
    ("contenttypes", "0002_remove_content_type_name"),
]


def _migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection)


def _migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_events_and_their_deliveries_survive_the_move_to_the_events_app() -> None:
    try:
        executor = _migrate(BEFORE_EVENTS_MOVE)
        old = executor.loader.project_state(STATE_BEFORE_EVENTS_MOVE).apps
        team = old.get_model("accounts", "Team").objects.create(name="Team A")
        event = old.get_model("notifications", "Event").objects.create(
            team_id=team.pk, kind="server_down", subject="a.example:443", dedup_key="scan:down:1", payload={"x": 1}
        )
        channel = old.get_model("notifications", "Channel").objects.create(
            team_id=team.pk, kind="webhook", name="ops", url="https://hooks.example/1", secret="s"
        )
        delivery = old.get_model("notifications", "Delivery").objects.create(team_id=team.pk, channel_id=channel.pk)
        old.get_model("notifications", "DeliveryItem").objects.create(
            delivery_id=delivery.pk, event_id=event.pk, channel_id=channel.pk
        )
        content_type = old.get_model("contenttypes", "ContentType").objects.get_or_create(
            app_label="notifications", model="event"
        )[0]

        _migrate_to_latest()

        moved = Event.objects.get(pk=event.pk)
        assert (moved.team_id, moved.kind, moved.subject, moved.dedup_key, moved.payload) == (
            team.pk,
            "server_down",
            "a.example:443",
            "scan:down:1",
            {"x": 1},
        )
        assert list(DeliveryItem.objects.filter(delivery_id=delivery.pk).values_list("event_id", flat=True)) == [
            event.pk
        ]
        assert ContentType.objects.get(pk=content_type.pk).app_label == "events"
    finally:
        _migrate_to_latest()
