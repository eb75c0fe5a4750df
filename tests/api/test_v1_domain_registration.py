"""/api/v1/domains/{id}/: the watched domain's registration (RDAP), added without renaming anything."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitors.models import DomainRegistration, RegistrationStatus, WatchedDomain
from tests.api.conftest import key_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(people) -> WatchedDomain:
    return WatchedDomain.objects.create(team=people.team_a, domain="www.shop.example")


def test_detail_has_the_registration_once_it_is_known(alice_key, shop) -> None:
    client = key_client(alice_key)
    body = client.get(f"/api/v1/domains/{shop.uuid}/").json()
    assert body["registration"] is None
    assert {"id", "domain", "include_subdomains", "auto_watch", "created_at"} <= set(body)
    expires = timezone.now() + timedelta(days=27, hours=2)
    DomainRegistration.objects.create(
        domain="shop.example",
        status=RegistrationStatus.OK,
        expires_at=expires,
        registrar="Lab Names GmbH",
        statuses=["active"],
        rdap_server="https://rdap.lab.test/",
        last_checked_at=timezone.now(),
    )
    registration = client.get(f"/api/v1/domains/{shop.uuid}/").json()["registration"]
    assert registration["registered_domain"] == "shop.example"
    assert registration["status"] == "ok" and registration["days_left"] == 27 and registration["level"] == "warning"
    assert registration["registrar"] == "Lab Names GmbH" and registration["statuses"] == ["active"]
    assert registration["rdap_server"] == "https://rdap.lab.test/"
    assert registration["expires_at"].startswith(expires.date().isoformat())
    # The list keeps its shape.
    [listed] = client.get("/api/v1/domains/").json()["results"]
    assert set(listed) == {"id", "domain", "include_subdomains", "auto_watch", "created_at"}


def test_charlie_gets_404_for_alices_domain(charlie_key, shop) -> None:
    DomainRegistration.objects.create(domain="shop.example", expires_at=timezone.now() + timedelta(days=5))
    assert key_client(charlie_key).get(f"/api/v1/domains/{shop.uuid}/").status_code == 404


def test_the_openapi_schema_describes_the_registration(alice_key) -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    assert "registration" in components["WatchedDomainDetail"]["properties"]
    assert "expires_at" in components["DomainRegistration"]["properties"]
