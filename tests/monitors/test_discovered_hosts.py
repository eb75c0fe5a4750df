"""Discovered hosts recorded for many watched domains at once (what CT ingestion does per chunk)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitors.domains import domain_watch, hosts_record_bulk
from monitors.models import DiscoveredHost
from notifications.models import Event

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def test_many_domains_in_a_few_queries_new_hosts_created_known_ones_touched(
    people, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    a = domain_watch(team=people.team_a, domain="shop.example")
    b = domain_watch(team=people.team_b, domain="shop.example")
    c = domain_watch(team=people.team_a, domain="other.example")
    hosts_record_bulk(names_by_domain={a: ["www.shop.example"]}, seen_at=T0)
    later = T0 + timedelta(days=1)
    with django_assert_max_num_queries(6):  # select, update, insert, events (+ dispatch marker)
        new = hosts_record_bulk(
            names_by_domain={
                a: ["www.shop.example", "api.shop.example", "*.shop.example", "192.0.2.1"],
                b: ["www.shop.example"],
                c: ["mail.other.example"],
            },
            seen_at=later,
            notify=True,
        )
    assert new == 3  # api under a, www under b, mail under c; wildcards and IPs are not hosts
    rows = {(h.watched_domain_id, h.name): h for h in DiscoveredHost.objects.all()}
    assert set(rows) == {
        (a.pk, "www.shop.example"),
        (a.pk, "api.shop.example"),
        (b.pk, "www.shop.example"),
        (c.pk, "mail.other.example"),
    }
    assert rows[(a.pk, "www.shop.example")].first_seen_at == T0
    assert rows[(a.pk, "www.shop.example")].last_seen_at == later
    assert rows[(b.pk, "www.shop.example")].team_id == people.team_b.pk
    events = set(Event.objects.filter(kind="host_discovered").values_list("team_id", "subject"))
    assert events == {
        (people.team_a.pk, "api.shop.example"),
        (people.team_b.pk, "www.shop.example"),
        (people.team_a.pk, "mail.other.example"),
    }
    # Everything known now: nothing new, no events.
    assert hosts_record_bulk(names_by_domain={a: ["api.shop.example"], b: ["www.shop.example"]}, seen_at=later) == 0


def test_a_public_suffix_watched_before_the_refusal_matches_nobody(people) -> None:
    from monitors.domains import WatchedDomainProvider
    from monitors.models import WatchedDomain

    WatchedDomain.objects.create(team=people.team_b, domain="org")  # stored before input refused it
    domain_watch(team=people.team_b, domain="shop.example")
    assert [w.domain for w in WatchedDomainProvider().watches()] == ["shop.example"]
