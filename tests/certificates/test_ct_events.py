"""Matching during ingestion: events, discovered hosts, auto-watch, tenancy."""

from __future__ import annotations

import pytest

from certificates.logs import ct_log_reset
from certificates.models import CTLog
from monitors.domains import domain_unwatch, domain_watch
from monitors.models import DiscoveredHost, Server
from notifications.models import Event
from tests.certificates.helpers import db_log, ingest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("api", ["rfc6962", "static"])
def test_exactly_one_event_per_team_per_issuance(local_logs, people, ct_settings, api: str) -> None:
    ct_settings.KEYCHEST_CT_CHUNK = 7
    local = local_logs(api)
    domain_watch(team=people.team_a, domain="acme.example")
    domain_watch(team=people.team_a, domain="www.acme.example", include_subdomains=False)
    domain_watch(team=people.team_b, domain="ACME.example.")
    local.add_random(5)
    issuance = local.issue(["www.acme.example", "api.acme.example", "*.acme.example"])
    # precertificate and final certificate land in different chunks (and so different commits)
    pre_index = local.add_issuance(issuance, certificate=False)[0]
    local.add_random(20)
    local.add_issuance(issuance, precertificate=False)
    local.add_issuance(local.issue(["unrelated.example"]))
    local.publish()
    log = db_log(local)
    assert ingest(log).caught_up
    for team in (people.team_a, people.team_b):
        events = list(Event.objects.for_team(team).filter(kind="certificate_issued"))
        assert len(events) == 1
        event = events[0]
        assert event.payload["names"] == ["*.acme.example", "api.acme.example", "www.acme.example"]
        assert event.payload["precertificate"] is True
        assert event.payload["log_index"] == pre_index
        assert event.dedup_key.startswith("ct:issued:")
    # reading the log again records nothing new
    ct_log_reset(log=CTLog.objects.get(pk=log.pk), start_index=0)
    assert ingest(log).caught_up
    assert Event.objects.filter(kind="certificate_issued").count() == 2


def test_discovered_hosts_and_auto_watch(local_logs, people) -> None:
    local = local_logs("rfc6962")
    watched = domain_watch(team=people.team_a, domain="corp.example", auto_watch=True)
    other = domain_watch(team=people.team_b, domain="corp.example")
    local.add_issuance(local.issue(["corp.example", "vpn.corp.example", "*.corp.example"]))
    local.add_issuance(local.issue(["mail.corp.example"]))
    local.publish()
    assert ingest(db_log(local)).caught_up
    names_a = set(DiscoveredHost.objects.for_team(people.team_a).values_list("name", flat=True))
    assert names_a == {"corp.example", "vpn.corp.example", "mail.corp.example"}
    assert set(DiscoveredHost.objects.filter(watched_domain=other).values_list("name", flat=True)) == names_a
    # team A asked for auto-watch: the hosts became servers of team A only
    assert set(Server.objects.for_team(people.team_a).values_list("host", flat=True)) == names_a
    assert not Server.objects.for_team(people.team_b).exists()
    assert DiscoveredHost.objects.filter(watched_domain=watched, watched_at=None).count() == 0
    assert Event.objects.for_team(people.team_a).filter(kind="host_discovered").count() == 3


def test_an_unwatched_domain_no_longer_matches(local_logs, people) -> None:
    local = local_logs("static")
    watched = domain_watch(team=people.team_a, domain="gone.example")
    domain_unwatch(watched_domain=watched)
    local.add_issuance(local.issue(["www.gone.example"]))
    local.publish()
    assert ingest(db_log(local)).caught_up
    assert not Event.objects.filter(kind="certificate_issued").exists()


def test_a_newly_watched_domain_shows_its_history_from_the_table(local_logs, people) -> None:
    from certificates.services import certificates_for

    local = local_logs("rfc6962")
    local.add_issuance(local.issue(["old.history.example", "history.example"]))
    local.add_issuance(local.issue(["*.history.example"]))
    local.publish()
    assert ingest(db_log(local)).caught_up
    requests_before = len(local.requests)
    watched = domain_watch(team=people.team_a, domain="history.example")
    assert len(local.requests) == requests_before  # no re-download
    assert len(certificates_for("history.example")) == 2
    assert set(DiscoveredHost.objects.filter(watched_domain=watched).values_list("name", flat=True)) == {
        "old.history.example",
        "history.example",
    }
    # history is not news: no events for certificates issued before the domain was watched
    assert not Event.objects.filter(kind__in=["certificate_issued", "host_discovered"]).exists()
