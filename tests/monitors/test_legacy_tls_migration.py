"""The data migration that renames stored legacy versions ("TLSv1.1" -> "TLS 1.1")."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.utils import timezone

from kcproto.tlsprobe import Probe
from monitors.models import ScanResult, Server
from monitors.scan_storing import digest as _digest

pytestmark = pytest.mark.django_db
migration = importlib.import_module("monitors.migrations.0007_legacy_tls_names")


def test_stored_versions_are_renamed_and_back(people) -> None:
    server = Server.objects.create(team=people.team_a, host="legacy.example.com", port=443)

    def row(address: str, legacy: list[str]) -> ScanResult:
        now = timezone.now()
        return ScanResult.objects.create(
            team=people.team_a, server=server, address=address, legacy_tls=legacy, first_seen=now, last_seen=now
        )

    old, both, none = row("192.0.2.1", ["TLSv1.1"]), row("192.0.2.2", ["TLSv1", "TLSv1.1"]), row("192.0.2.3", [])
    migration.forward(apps, None)
    assert [ScanResult.objects.get(pk=r.pk).legacy_tls for r in (old, both, none)] == [
        ["TLS 1.1"],
        ["TLS 1.0", "TLS 1.1"],
        [],
    ]
    migration.backward(apps, None)
    assert ScanResult.objects.get(pk=both.pk).legacy_tls == ["TLSv1", "TLSv1.1"]


def test_the_state_digest_does_not_change_with_the_spelling() -> None:
    before = Probe(address="192.0.2.1", port=443, tls_version="TLSv1.3", legacy_versions=["TLSv1.1"])
    after = Probe(address="192.0.2.1", port=443, tls_version="TLSv1.3", legacy_versions=["TLS 1.1"])
    assert _digest(before, ["a"]) == _digest(after, ["a"])
