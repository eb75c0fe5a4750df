"""IP-range discovery on 127.0.0.0/26 of lab servers: services found (without SNI and with watched
names), rate limits respected, vanished services noticed, the SaaS's limits on ranges, the API and
the page, tenancy."""

from __future__ import annotations

import asyncio

import pytest

from agents.services import agent_create
from discovery.models import FoundService, IPRange
from discovery.services import RangeRefused, range_add, ranges_claim_due, ranges_sweep, service_watch
from events.models import Event
from kcproto import sweep
from monitors.models import Server
from monitors.services import server_enrol

pytestmark = pytest.mark.django_db


@pytest.fixture
def sweeping(lab_settings):  # type: ignore[no-untyped-def]
    """The test deployment allows 127.0.0.0/26; fast attempts, generous rates."""
    lab_settings.KEYCHEST_SCAN_DEADLINE = 2.0
    lab_settings.KEYCHEST_SCAN_CONNECT_TIMEOUT = 0.5
    lab_settings.KEYCHEST_DISCOVERY_RATE = 400.0
    lab_settings.KEYCHEST_DISCOVERY_RANGE_RATE = 400.0
    return lab_settings


def close(lab, endpoint) -> None:  # type: ignore[no-untyped-def]
    async def shut() -> None:
        for server in endpoint.servers:
            server.close()
            await server.wait_closed()

    asyncio.run_coroutine_threadsafe(shut(), lab.loop).result(5)


def test_a_sweep_finds_services_asks_watched_names_and_notices_vanished_ones(people, lab, sweeping) -> None:
    plain = lab.tls(lab.leaf(["appliance.corp.test"]), hosts=["127.0.0.9"])
    # One port, two addresses: 127.0.0.33 serves a certificate for a watched name.
    other = lab.tls(lab.leaf(["intranet.corp.test", "www.corp.test"]), hosts=["127.0.0.33"])
    server_enrol(team=people.team_a, host="intranet.corp.test")
    ip_range = range_add(team=people.team_a, cidr="127.0.0.0/26", ports=[plain.port, other.port])
    assert ranges_claim_due() == [ip_range.pk]
    result = ranges_sweep([ip_range.pk], seed=1)[ip_range.pk]
    assert result.attempts >= 62 * 2
    found = {(s.address, s.port, s.sni): s for s in FoundService.objects.filter(ip_range=ip_range)}
    assert {("127.0.0.9", plain.port, ""), ("127.0.0.33", other.port, "")} <= set(found)
    # Anything else is another lab server (of this run, or of another test run on this machine)
    # that happens to listen on the same port number on another 127.0.0.x address.
    assert found[("127.0.0.33", other.port, "")].names == ["intranet.corp.test", "www.corp.test"]
    assert found[("127.0.0.9", plain.port, "")].leaf_sha256
    assert Event.objects.filter(kind="service_found", team=people.team_a).count() == len(found)
    ip_range.refresh_from_db()
    assert ip_range.last_sweep_at is not None and ip_range.next_sweep_at > ip_range.last_sweep_at
    assert ranges_claim_due() == []  # weekly cadence: not due again
    close(lab, plain)
    ranges_sweep([ip_range.pk], seed=2)
    gone = FoundService.objects.get(ip_range=ip_range, address="127.0.0.9")
    assert gone.vanished_at is not None
    assert Event.objects.filter(kind="service_vanished", payload__address="127.0.0.9").count() == 1
    assert FoundService.objects.get(ip_range=ip_range, address="127.0.0.33").vanished_at is None


def test_a_watched_name_the_certificate_covers_is_asked_by_sni(people, lab, sweeping) -> None:
    default = lab.leaf(["default.corp.test", "app.corp.test"])
    endpoint = lab.tls(default, hosts=["127.0.0.40"])
    endpoint.serve(lab.leaf(["app.corp.test"]), host="127.0.0.40")  # same cert for every SNI here
    server_enrol(team=people.team_a, host="app.corp.test")
    found = asyncio.run(
        sweep.sweep(
            "127.0.0.40/32",
            [endpoint.port],
            limiters=[sweep.RateLimiter(100)],
            allow_private=True,
            names=["app.corp.test"],
            deadline=2.0,
            connect_timeout=0.5,
        )
    )
    assert [(s.address, s.sni) for s in found.services] == [("127.0.0.40", "")]
    assert found.attempts == 2  # asked again with the watched name the certificate covers


def test_the_rate_limits_hold(people, sweeping) -> None:
    """Per range 40/s and a global 60/s over two ranges: no second holds more than its share."""
    sweeping.KEYCHEST_DISCOVERY_RATE = 60.0
    first = range_add(team=people.team_a, cidr="127.0.0.0/27", ports=[9], rate=40.0)
    second = range_add(team=people.team_a, cidr="127.0.0.32/27", ports=[9], rate=40.0)
    results = ranges_sweep([first.pk, second.pk])
    attempts = sum(r.attempts for r in results.values())
    assert attempts == 60
    longest = max(r.seconds for r in results.values())
    # 60 attempts at 60/s globally: about a second, though each range alone would allow 40/s.
    assert longest >= (attempts - 1) / 60.0 - 0.05


def test_the_limiter_spaces_starts_evenly() -> None:
    limiter = sweep.RateLimiter(50.0)

    async def run() -> None:
        await asyncio.gather(*(limiter.wait() for _ in range(20)))

    asyncio.run(run())
    gaps = [b - a for a, b in zip(limiter.starts, limiter.starts[1:], strict=False)]
    assert min(gaps) >= 0.0199


def test_the_order_is_shuffled() -> None:
    addresses = sweep.range_addresses("127.0.0.0/26")
    assert len(addresses) == 62 and addresses[0] == "127.0.0.1"
    with pytest.raises(ValueError, match="1024"):
        sweep.range_addresses("10.0.0.0/21")


def test_the_saas_accepts_only_public_ranges_up_to_a_slash_22_within_quota(people, settings) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    settings.KEYCHEST_DISCOVERY_MAX_RANGES = 2
    for private in ("10.1.0.0/24", "127.0.0.0/26", "192.168.1.0/28", "169.254.169.0/24", "fd00::/120"):
        with pytest.raises(RangeRefused, match="not public"):
            range_add(team=people.team_a, cidr=private)
    with pytest.raises(RangeRefused, match="1024"):
        range_add(team=people.team_a, cidr="8.8.0.0/21")
    range_add(team=people.team_a, cidr="8.8.8.0/24")
    with pytest.raises(RangeRefused, match="already"):
        range_add(team=people.team_a, cidr="8.8.8.0/24")
    range_add(team=people.team_a, cidr="1.1.1.0/22")
    with pytest.raises(RangeRefused, match="at most 2"):
        range_add(team=people.team_a, cidr="9.9.9.0/24")
    # A private range is fine when the team's agent sweeps it; the SaaS never claims it.
    agent, _ = agent_create(team=people.team_b, name="dc1")
    private = range_add(team=people.team_b, cidr="10.1.0.0/24", agent=agent)
    assert private.pk not in ranges_claim_due()


def test_watching_a_found_service(people, lab, sweeping) -> None:
    endpoint = lab.tls(lab.leaf(["printer.corp.test"]), hosts=["127.0.0.12"])
    agent, _ = agent_create(team=people.team_a, name="dc1")
    ip_range = range_add(team=people.team_a, cidr="127.0.0.12/32", ports=[endpoint.port])
    ranges_sweep([ip_range.pk])
    found = FoundService.objects.get(ip_range=ip_range)
    with pytest.raises(RangeRefused):
        service_watch(service=found, name="not-in-the-certificate.test")
    server = service_watch(service=found, name="printer.corp.test")
    assert (server.host, server.port, server.pinned_ip) == ("printer.corp.test", endpoint.port, "127.0.0.12")
    IPRange.objects.filter(pk=ip_range.pk).update(agent=agent)
    found.refresh_from_db()
    by_address = service_watch(service=found)
    assert by_address.host == "127.0.0.12" and Server.objects.get(pk=by_address.pk).agent_id == agent.pk


# --- API and tenancy ----------------------------------------------------------------------------
def test_the_api_adds_lists_and_shows_found_services(alice_client, people, lab, sweeping) -> None:
    endpoint = lab.tls(lab.leaf(["api.corp.test"]), hosts=["127.0.0.20"])
    created = alice_client.post(
        "/api/v1/ranges/", {"cidr": "127.0.0.20/31", "ports": [endpoint.port]}, content_type="application/json"
    )
    assert created.status_code == 201, created.content
    range_id = created.json()["id"]
    ranges_sweep([IPRange.objects.get(uuid=range_id).pk])
    listed = alice_client.get("/api/v1/ranges/").json()["results"]
    assert listed[0]["services"] == 1 and listed[0]["last_sweep_attempts"] == 2
    services = alice_client.get(f"/api/v1/ranges/{range_id}/services/").json()["results"]
    assert [(s["address"], s["names"]) for s in services] == [("127.0.0.20", ["api.corp.test"])]
    watched = alice_client.post(
        f"/api/v1/ranges/{range_id}/watch/",
        {"service": services[0]["id"], "name": "api.corp.test"},
        content_type="application/json",
    )
    assert watched.status_code == 201 and watched.json()["label"] == f"api.corp.test:{endpoint.port}"


def test_the_api_refuses_a_private_range_on_the_saas(alice_client, settings) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    answer = alice_client.post("/api/v1/ranges/", {"cidr": "10.0.0.0/24"}, content_type="application/json")
    assert answer.status_code == 400 and "agent" in answer.content.decode()


def test_charlie_cannot_see_or_use_alices_ranges(charlie_client, people, settings) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
    ip_range = range_add(team=people.team_a, cidr="127.0.0.0/30")
    alice_agent, _ = agent_create(team=people.team_a, name="dc1")
    assert charlie_client.get(f"/api/v1/ranges/{ip_range.uuid}/").status_code == 404
    assert charlie_client.get(f"/api/v1/ranges/{ip_range.uuid}/services/").status_code == 404
    assert charlie_client.delete(f"/api/v1/ranges/{ip_range.uuid}/").status_code == 404
    assert charlie_client.get("/api/v1/ranges/").json()["results"] == []
    # Nor sweep through alice's agent.
    answer = charlie_client.post(
        "/api/v1/ranges/", {"cidr": "10.0.0.0/24", "agent": str(alice_agent.uuid)}, content_type="application/json"
    )
    assert answer.status_code == 404
    assert charlie_client.get(f"/ranges/{ip_range.uuid}/").status_code == 404


def test_the_range_pages(alice_client, people, lab, sweeping) -> None:
    endpoint = lab.tls(lab.leaf(["<script>x</script>.corp.test"]), hosts=["127.0.0.50"])
    answer = alice_client.post("/ranges/", {"cidr": "127.0.0.50/32", "ports": f"443, {endpoint.port}"})
    assert answer.status_code == 302
    ip_range = IPRange.objects.get(team=people.team_a)
    assert ip_range.ports == [443, endpoint.port]
    ranges_sweep([ip_range.pk])
    page = alice_client.get(f"/ranges/{ip_range.uuid}/").content
    assert b"127.0.0.50" in page and b"<script>x" not in page
    listing = alice_client.get("/ranges/").content
    assert b"127.0.0.50/32" in listing


def test_one_sweeping_pass_at_a_time_and_no_more_than_a_pass_can_sweep(people, settings) -> None:
    from django.core.cache import cache

    from discovery.services import SWEEP_LOCK, ranges_sweep_due

    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
    settings.KEYCHEST_DISCOVERY_RATE = 0.3  # 864 attempts fit in one claim (80 % of an hour)
    big = range_add(team=people.team_a, cidr="127.0.1.0/22", ports=[9])
    second = range_add(team=people.team_a, cidr="127.0.2.0/30", ports=[9])
    assert ranges_claim_due() == [big.pk]  # the next pass takes the other one
    assert ranges_claim_due() == [second.pk]
    IPRange.objects.update(claimed_until=None)
    cache.add(SWEEP_LOCK, "1", timeout=60)  # a pass runs elsewhere
    try:
        assert ranges_sweep_due() == 0
    finally:
        cache.delete(SWEEP_LOCK)
    assert IPRange.objects.filter(claimed_until__isnull=False).count() == 0
