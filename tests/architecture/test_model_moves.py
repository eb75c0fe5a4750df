"""Models that moved between apps (issue 20) keep every row: migrate back to before the move,
write rows through the old app's historical models, migrate forward, read them in the new app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


BEFORE_API_MOVES = [
    ("api", "0003_auth_epoch"),
    ("accounts", "0002_user_notification_email_confirmed_at"),
    ("certificates", "0008_certificate_ct_logged"),
    ("monitors", "0008_server_agent_watcheddomain_agent"),
]
STATE_BEFORE_API_MOVES = [*BEFORE_API_MOVES, ("contenttypes", "0002_remove_content_type_name")]


@pytest.mark.django_db(transaction=True)
def test_keys_claims_held_enrolments_and_uploads_survive_the_move_out_of_api() -> None:
    from certificates.models import UploadedCertificate
    from keychest.accounts.models import ApiKey, Claim, ClaimBlock
    from monitors.models import PendingEnrolment

    try:
        executor = _migrate(BEFORE_API_MOVES)
        old = executor.loader.project_state(STATE_BEFORE_API_MOVES).apps
        team = old.get_model("accounts", "Team").objects.create(name="Team A")
        user = old.get_model("accounts", "User").objects.create(email="alice@example.org")
        key = old.get_model("api", "ApiKey").objects.create(
            team_id=team.pk, user_id=user.pk, key_hash="a" * 64, display_prefix="kc_aaaa", scopes=["read"]
        )
        claim = old.get_model("api", "Claim").objects.create(
            team_id=team.pk, user_id=user.pk, api_key_id=key.pk, email="alice@example.org", kind="new_key"
        )
        old.get_model("api", "ClaimBlock").objects.create(email="blocked@example.org")
        held = old.get_model("api", "PendingEnrolment").objects.create(
            team_id=team.pk, api_key_id=key.pk, kind="server", host="held.example", port=443
        )
        certificate = old.get_model("certificates", "Certificate").objects.create(
            sha256="b" * 64,
            der=b"\x30",
            serial="1",
            not_before=datetime(2026, 1, 1, tzinfo=UTC),
            not_after=datetime(2027, 1, 1, tzinfo=UTC),
            lifetime=timedelta(days=365),
            issuance_key="c" * 64,
        )
        upload = old.get_model("api", "UploadedCertificate").objects.create(
            team_id=team.pk, certificate_id=certificate.pk, api_key_id=key.pk
        )
        content_type = old.get_model("contenttypes", "ContentType").objects.get_or_create(
            app_label="api", model="apikey"
        )[0]

        _migrate_to_latest()

        moved_key = ApiKey.objects.get(pk=key.pk)
        assert (moved_key.team_id, moved_key.user_id, moved_key.key_hash, moved_key.scopes) == (
            team.pk,
            user.pk,
            "a" * 64,
            ["read"],
        )
        assert Claim.objects.get(pk=claim.pk).api_key == moved_key
        assert ClaimBlock.objects.filter(email="blocked@example.org").exists()
        assert PendingEnrolment.objects.get(pk=held.pk).host == "held.example"
        assert list(moved_key.pending_enrolments.values_list("pk", flat=True)) == [held.pk]
        assert UploadedCertificate.objects.get(pk=upload.pk).certificate_id == certificate.pk
        assert ContentType.objects.get(pk=content_type.pk).app_label == "accounts"
    finally:
        _migrate_to_latest()
