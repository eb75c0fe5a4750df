from __future__ import annotations

import pytest

from events.services import MARKER, event_record
from notifications.models import EventKind

pytestmark = pytest.mark.django_db


def _dispatch_requests(callbacks) -> int:
    return sum(1 for c in callbacks if getattr(c, MARKER, False))


def test_many_events_in_one_transaction_ask_for_one_dispatch(people, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        for i in range(5):
            event_record(team=people.team_a, kind=EventKind.CERTIFICATE_ISSUED, subject="x", dedup_key=f"k{i}")
    assert _dispatch_requests(callbacks) == 1


def test_a_rolled_back_savepoint_takes_its_request_along(people, django_capture_on_commit_callbacks) -> None:
    from django.db import transaction

    with django_capture_on_commit_callbacks() as callbacks:
        try:
            with transaction.atomic():
                event_record(team=people.team_a, kind=EventKind.SERVER_DOWN, subject="x", dedup_key="gone")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        event_record(team=people.team_a, kind=EventKind.SERVER_DOWN, subject="x", dedup_key="kept")
    assert _dispatch_requests(callbacks) == 1
