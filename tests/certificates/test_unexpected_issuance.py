"""Unexpected issuance during CT ingestion: CAA, allowed CAs and known keys, per team."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils import timezone

from kcproto.issuance import spki_sha256
from monitors.domains import domain_watch
from monitors.issuance import issuance_policy_set
from monitors.models import WatchedDomain
from notifications.models import Event
from tests.certificates.helpers import db_log, ingest

pytestmark = pytest.mark.django_db(transaction=True)


def test_unexpected_issuance_events_follow_each_teams_policy(local_logs, people, ct_settings) -> None:
    charlie_team = people.team_b
    local = local_logs("rfc6962")
    domain_watch(team=people.team_a, domain="shop.example")
    domain_watch(team=charlie_team, domain="shop.example")
    # Team A's domain publishes CAA for Let's Encrypt only; the lab CA is not it.
    WatchedDomain.objects.filter(team=people.team_a).update(
        caa_found=True, caa_domain="shop.example", caa_issue=["letsencrypt.org"], caa_checked_at=timezone.now()
    )
    known = ec.generate_private_key(ec.SECP256R1()).public_key()
    first = local.issue(["www.shop.example"], public_key=known)
    pin = spki_sha256(first.certificate)
    # Team B knows the first key and allows the lab CA by name; CAA is not read for it.
    issuance_policy_set(team=charlie_team, allowed_issuers=["keychest lab"], known_keys=[pin], check_caa=True)
    second = local.issue(["api.shop.example"])  # another key
    local.add_issuance(first)  # precertificate and certificate: one issuance
    local.add_issuance(second)
    local.publish()
    assert ingest(db_log(local)).caught_up

    a_unexpected = Event.objects.for_team(people.team_a).filter(kind="unexpected_issuance")
    assert a_unexpected.count() == 2  # CAA allows letsencrypt.org only
    assert all(e.severity == "critical" for e in a_unexpected)
    assert all("CAA record of shop.example allows letsencrypt.org" in e.payload["reasons"][0] for e in a_unexpected)
    assert Event.objects.for_team(people.team_a).filter(kind="certificate_issued").count() == 2

    b_unexpected = list(Event.objects.for_team(charlie_team).filter(kind="unexpected_issuance"))
    assert [e.payload["names"] for e in b_unexpected] == [["api.shop.example"]]
    assert "known keys" in b_unexpected[0].payload["reasons"][0]
    assert Event.objects.for_team(charlie_team).filter(kind="certificate_issued").count() == 2

    # Reading the log again records nothing twice.
    from certificates.logs import ct_log_reset
    from certificates.models import CTLog

    log = CTLog.objects.get()
    ct_log_reset(log=log, start_index=0)
    assert ingest(log).caught_up
    assert Event.objects.filter(kind="unexpected_issuance").count() == 3
