"""Registration expiry (RDAP) on the dashboard's domain pages, with tenancy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from monitors.models import DomainRegistration, RegistrationStatus, WatchedDomain

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(people) -> WatchedDomain:
    watched = WatchedDomain.objects.create(team=people.team_a, domain="www.shop.example")
    now = timezone.now()
    DomainRegistration.objects.create(
        domain="shop.example",
        status=RegistrationStatus.OK,
        expires_at=now + timedelta(days=20, hours=1),
        registered_at=now - timedelta(days=700),
        registrar="Lab Names <GmbH>",
        statuses=["client transfer prohibited"],
        rdap_server="https://rdap.lab.test/",
        last_checked_at=now - timedelta(hours=3),
        next_check_at=now + timedelta(hours=45),
    )
    return watched


def test_the_domain_list_shows_when_each_registration_expires(alice_client, people, shop) -> None:
    WatchedDomain.objects.create(team=people.team_a, domain="new.test")  # not looked up yet
    page = alice_client.get(reverse("domain_list")).content.decode()
    row = page.split('data-domain="www.shop.example"')[1].split("</tr>")[0]
    assert "in 20 days" in row and "≤ 28 days" in row
    new_row = page.split('data-domain="new.test"')[1].split("</tr>")[0]
    assert "not checked yet" in new_row


def test_the_domain_detail_shows_the_registration_escaped(bob_client, shop) -> None:
    page = bob_client.get(reverse("domain_detail", args=[shop.uuid])).content.decode()
    card = page.split('data-testid="registration"')[1].split("</section>")[0]
    assert "Registration of shop.example" in card
    assert "Lab Names &lt;GmbH&gt;" in card and "<GmbH>" not in card
    assert "client transfer prohibited" in card and "https://rdap.lab.test/" in card
    assert "≤ 28 days" in card


def test_charlie_sees_neither_the_domain_nor_its_registration(charlie_client, shop) -> None:
    assert charlie_client.get(reverse("domain_detail", args=[shop.uuid])).status_code == 404
    page = charlie_client.get(reverse("domain_list")).content.decode()
    assert "shop.example" not in page


def test_the_list_reads_registrations_in_one_query_however_many_domains(alice_client, people, shop) -> None:
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert alice_client.get(reverse("domain_list")).status_code == 200
        return len(queries)

    few = count()
    for i in range(8):
        WatchedDomain.objects.create(team=people.team_a, domain=f"d{i}.test")
        DomainRegistration.objects.create(domain=f"d{i}.test", expires_at=timezone.now() + timedelta(days=i))
    assert count() == few
