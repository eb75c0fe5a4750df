"""A large sweep reported by an agent in size-bounded parts: every part fits a request, services
are stored as parts arrive, and services vanish only once the whole sweep is in. And the agent's
ranges swept under one global rate limit."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time

import pytest
from django.conf import settings
from django.test import Client
from keychest_agent import cli
from keychest_agent.scan import ScanOptions

from agents.services import agent_create, agent_enrol
from discovery.models import FoundService, IPRange
from discovery.services import range_add, services_store
from events.models import Event
from kcproto import agentwire, sweep, tlsprobe
from lab.pki import now, self_signed

pytestmark = pytest.mark.django_db

PORTS = [443, 8443, 993]


@pytest.fixture
def big_range(people, enrolled) -> IPRange:  # type: ignore[no-untyped-def]
    return range_add(team=people.team_a, cidr="10.20.0.0/22", ports=[*PORTS, 5432], agent=enrolled.agent)


def service(address: str, port: int, der: bytes) -> sweep.Service:
    probe = tlsprobe.Probe(address=address, port=port, chain_der=[der], tls_version="TLSv1.3")
    return sweep.Service(address, port, "tls", "", probe)


def synthetic(der: bytes) -> list[dict]:
    """Every host of the /22 answering on three ports: 3,066 services."""
    return [service(a, p, der).as_dict() for a in sweep.range_addresses("10.20.0.0/22") for p in PORTS]


def post(enrolled, body: dict):  # type: ignore[no-untyped-def]
    return enrolled.client.post("/api/v1/agent/sweeps", body, content_type="application/json", **enrolled.headers())


def test_a_large_sweep_travels_in_parts_and_vanishes_services_only_when_complete(enrolled, big_range) -> None:
    der = self_signed(["appliance.corp.test"], key_kind="rsa").der
    earlier = now() - dt.timedelta(days=7)
    # The previous sweep saw one service that is still there and one that is gone now.
    services_store(
        ip_range=big_range,
        services=[service("10.20.3.254", 993, der), service("10.20.3.254", 5432, der)],
        now=earlier,
    )
    services = synthetic(der)
    assert len(services) == 3066
    whole = {"range": str(big_range.uuid), "services": services, "seconds": 30.0}
    assert len(json.dumps(whole)) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert post(enrolled, whole).status_code == 400  # one request: too big (the gap this closes)

    reports = agentwire.sweep_reports(str(big_range.uuid), services, 30.0)
    assert len(reports) > 1 and len({r["sweep"] for r in reports}) == 1
    assert all(len(json.dumps(r)) < settings.DATA_UPLOAD_MAX_MEMORY_SIZE for r in reports)
    assert sum(len(r["services"]) for r in reports) == 3066

    for report in reports[:-1]:
        answer = post(enrolled, report)
        assert answer.status_code == 200, answer.content
        assert answer.json()["complete"] == 0 and answer.json()["vanished"] == 0
    # A part sent twice (its answer lost) changes nothing.
    assert post(enrolled, reports[0]).json()["duplicate"] == 1
    gone = FoundService.objects.get(ip_range=big_range, port=5432)
    assert gone.vanished_at is None  # a partial sweep never marks anything vanished
    assert not Event.objects.filter(kind="service_vanished").exists()
    big_range.refresh_from_db()
    assert big_range.last_sweep_at is None or big_range.last_sweep_at == earlier

    last = post(enrolled, reports[-1]).json()
    assert last["complete"] == 1 and last["vanished"] == 1
    gone.refresh_from_db()
    assert gone.vanished_at is not None
    assert FoundService.objects.filter(ip_range=big_range, vanished_at=None).count() == 3066
    assert Event.objects.filter(kind="service_found").count() == 2 + 3065  # 10.20.3.254:993 was known
    assert Event.objects.filter(kind="service_vanished").count() == 1
    big_range.refresh_from_db()
    assert big_range.last_sweep_at is not None and big_range.last_sweep_at > earlier
    assert big_range.partial_sweep == "" and big_range.partial_parts == []


def test_an_abandoned_partial_sweep_never_marks_services_vanished(enrolled, big_range) -> None:
    der = self_signed(["nas.corp.test"]).der
    services_store(
        ip_range=big_range,
        services=[service("10.20.0.1", 443, der), service("10.20.0.2", 443, der)],
        now=now() - dt.timedelta(days=7),
    )
    seen_first = service("10.20.0.1", 443, der).as_dict()
    # Sweep "a" reports part 0 of 2 and its part 1 never arrives (refused, lost...).
    body = {"range": str(big_range.uuid), "sweep": "a", "part": 0, "parts": 2, "services": [seen_first]}
    assert post(enrolled, body).json() == {"services": 1, "new": 0, "vanished": 0, "complete": 0, "duplicate": 0}
    # The next sweep starts over; its parts complete it and only then is 10.20.0.2 vanished.
    body = {**body, "sweep": "b", "parts": 2}
    assert post(enrolled, body).json()["complete"] == 0
    assert not FoundService.objects.filter(ip_range=big_range).exclude(vanished_at=None).exists()
    done = post(enrolled, {**body, "part": 1, "services": []}).json()
    assert (done["complete"], done["vanished"]) == (1, 1)
    vanished = FoundService.objects.filter(ip_range=big_range).exclude(vanished_at=None)
    assert list(vanished.values_list("address", flat=True)) == ["10.20.0.2"]


@pytest.mark.parametrize(
    "change",
    [{"part": 2}, {"part": -1}, {"parts": 0}, {"parts": 10_000}, {"sweep": "../x"}, {"sweep": ""}, {"part": "0"}],
)
def test_malformed_parts_are_refused(enrolled, big_range, change) -> None:  # type: ignore[no-untyped-def]
    body = {"range": str(big_range.uuid), "sweep": "s1", "part": 0, "parts": 2, "services": [], **change}
    assert post(enrolled, body).status_code == 400
    big_range.refresh_from_db()
    assert big_range.partial_sweep == "" and big_range.last_sweep_at is None


def test_another_teams_agent_cannot_report_parts_for_this_range(people, big_range) -> None:
    _agent, token = agent_create(team=people.team_b, name="theirs")
    _, key = agent_enrol(token=token)
    body = {"range": str(big_range.uuid), "sweep": "s1", "part": 0, "parts": 1, "services": []}
    answer = Client().post(
        "/api/v1/agent/sweeps", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert answer.status_code == 404
    big_range.refresh_from_db()
    assert big_range.last_sweep_at is None and big_range.partial_sweep == ""


def test_the_agents_ranges_share_one_global_limiter() -> None:
    """The agent's sweeping code: two ranges of 6 closed loopback addresses, 1000/s each but 20/s
    together: 12 attempts spaced 50 ms apart, about 0.55 s (each range alone: a few ms)."""
    ranges = [
        agentwire.RangeTarget(id="a", cidr="127.0.0.200/29", ports=[9], rate_per_second=1000.0),
        agentwire.RangeTarget(id="b", cidr="127.0.0.192/29", ports=[9], rate_per_second=1000.0),
    ]
    shared = sweep.RateLimiter(20.0)
    started = time.monotonic()
    reports = cli.sweep_ranges(ranges, ScanOptions(deadline=2.0, connect_timeout=1.0), shared)
    assert time.monotonic() - started >= 11 / 20.0 - 0.02
    assert len(shared.starts) == 12
    assert min(b - a for a, b in itertools.pairwise(shared.starts)) >= 0.0499
    assert sorted(r["range"] for r in reports) == ["a", "b"]
    assert all(r["services"] == [] and r["parts"] == 1 for r in reports)
