"""Agents: creation by team admins (token shown once), enrolment, revocation, assignment, the work
list, results judged by the server (never by the agent), clock skew, silence, and tenancy."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.utils import timezone
from keychest_agent.scan import ScanOptions, scan_targets

from agents.models import Agent
from agents.services import agent_create, agents_silent_check, secret_hash
from events.models import Event
from kcproto import agentwire, tlsprobe
from lab.pki import CA, now, self_signed
from monitors.domains import domain_watch
from monitors.models import Finding, ScanResult, Server
from monitors.scanning import servers_claim_due
from monitors.services import ca_bundle_create, server_enrol

pytestmark = pytest.mark.django_db


def lab_scan(targets: list[dict], ca_bundle: str = "") -> list[dict]:
    """What the agent's own scanning code reports for these work items (real handshakes)."""
    items = [agentwire.Target.from_dict(t) for t in targets]
    return tlsprobe.run_sync(
        scan_targets(items, ca_bundle=ca_bundle, options=ScanOptions(deadline=2.0, connect_timeout=1.0))
    )


@pytest.fixture
def intranet(people, lab, enrolled):  # type: ignore[no-untyped-def]
    """A lab server on 127.0.0.1 with the team's private CA, assigned to the agent."""
    bundle = ca_bundle_create(team=people.team_a, name="lab root", pem=lab.root_pem)
    endpoint = lab.tls(lab.leaf(["intranet.corp.test"]))
    server = server_enrol(
        team=people.team_a, host=f"intranet.corp.test:{endpoint.port}", pinned_ip="127.0.0.1", ca_bundle=bundle
    )
    Server.objects.filter(pk=server.pk).update(agent=enrolled.agent)
    server.refresh_from_db()
    return server


# --- management API -----------------------------------------------------------------------------
def test_an_admin_creates_an_agent_and_sees_its_token_once(alice_client, people) -> None:
    created = alice_client.post("/api/v1/agents/", {"name": "dc1", "cadence": 120}, content_type="application/json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["token"].startswith("kcat_") and body["state"] == "waiting"
    assert created["Cache-Control"] == "no-store"
    agent = Agent.objects.get(uuid=body["id"])
    assert agent.token_hash == secret_hash(body["token"]) and body["token"] not in str(agent.__dict__)
    listed = alice_client.get("/api/v1/agents/").json()["results"]
    assert [a["id"] for a in listed] == [body["id"]] and "token" not in listed[0]
    assert alice_client.get(f"/api/v1/agents/{body['id']}/").json()["cadence"] == 120


def test_a_member_cannot_create_or_revoke_agents(bob_client, people) -> None:
    agent, _ = agent_create(team=people.team_a, name="dc1")
    assert bob_client.post("/api/v1/agents/", {"name": "x"}, content_type="application/json").status_code == 403
    assert bob_client.delete(f"/api/v1/agents/{agent.uuid}/").status_code == 403
    assert bob_client.get(f"/api/v1/agents/{agent.uuid}/").status_code == 200


def test_charlie_cannot_see_revoke_or_assign_to_alices_agent(charlie_client, people) -> None:
    agent, _ = agent_create(team=people.team_a, name="dc1")
    server = server_enrol(team=people.team_b, host="charlie.example:443")
    assert charlie_client.get(f"/api/v1/agents/{agent.uuid}/").status_code == 404
    assert charlie_client.delete(f"/api/v1/agents/{agent.uuid}/").status_code == 404
    assigned = charlie_client.post(
        f"/api/v1/agents/{agent.uuid}/assign/", {"servers": [str(server.uuid)]}, content_type="application/json"
    )
    assert assigned.status_code == 404
    assert charlie_client.get("/api/v1/agents/").json()["results"] == []
    agent.refresh_from_db()
    assert agent.revoked_at is None


def test_alice_cannot_assign_charlies_server_to_her_agent(alice_client, people) -> None:
    agent, _ = agent_create(team=people.team_a, name="dc1")
    theirs = server_enrol(team=people.team_b, host="charlie.example:443")
    answer = alice_client.post(
        f"/api/v1/agents/{agent.uuid}/assign/", {"servers": [str(theirs.uuid)]}, content_type="application/json"
    )
    assert answer.status_code == 404
    assert Server.objects.get(pk=theirs.pk).agent_id is None


# --- enrolment and revocation -------------------------------------------------------------------
def test_the_token_works_once_and_the_key_reaches_only_the_agent_calls(client, people) -> None:
    agent, token = agent_create(team=people.team_a, name="dc1")
    first = client.post("/api/v1/agent/enrol", {"token": token, "version": "1.2"}, content_type="application/json")
    assert first.status_code == 201, first.content
    key = first.json()["key"]
    again = client.post("/api/v1/agent/enrol", {"token": token}, content_type="application/json")
    assert again.status_code == 400
    agent.refresh_from_db()
    assert agent.key_hash == secret_hash(key) and agent.token_hash == "" and agent.version == "1.2"
    assert client.get("/api/v1/agent/work", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    # The agent key is no API key: the team's data stays closed to it.
    assert client.get("/api/v1/servers/", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 401


def test_an_expired_token_is_refused(client, people) -> None:
    _, token = agent_create(team=people.team_a, name="dc1")
    with time_machine.travel(timezone.now() + dt.timedelta(hours=25), tick=False):
        answer = client.post("/api/v1/agent/enrol", {"token": token}, content_type="application/json")
    assert answer.status_code == 400


def test_a_revoked_agent_is_refused_at_once(alice_client, enrolled) -> None:
    assert enrolled.work().status_code == 200
    assert alice_client.delete(f"/api/v1/agents/{enrolled.agent.uuid}/").status_code == 204
    assert enrolled.work().status_code == 401
    assert enrolled.report([]).status_code == 401
    assert alice_client.get(f"/api/v1/agents/{enrolled.agent.uuid}/").json()["state"] == "revoked"


# --- assignment and the work list ---------------------------------------------------------------
def test_the_saas_never_claims_an_assigned_server(people, enrolled) -> None:
    mine = server_enrol(team=people.team_a, host="intranet.corp.test:443")
    other = server_enrol(team=people.team_a, host="public.example:443")
    Server.objects.filter(pk=mine.pk).update(agent=enrolled.agent)
    claimed = servers_claim_due(limit=10, now=timezone.now() + dt.timedelta(seconds=1))
    assert other.pk in claimed and mine.pk not in claimed


def test_the_work_list_holds_only_this_agents_servers_and_the_team_ca(alice_client, people, enrolled) -> None:
    ca_bundle_create(team=people.team_a, name="corp", pem=self_signed(["corp-root"]).cert_pem)
    mine = server_enrol(team=people.team_a, host="intranet.corp.test:8443")
    server_enrol(team=people.team_a, host="public.example:443")
    server_enrol(team=people.team_b, host="intranet.corp.test:8443")
    assigned = alice_client.post(
        f"/api/v1/agents/{enrolled.agent.uuid}/assign/", {"servers": [str(mine.uuid)]}, content_type="application/json"
    )
    assert assigned.status_code == 200
    work = enrolled.work().json()
    assert [(t["id"], t["host"], t["port"], t["due"]) for t in work["targets"]] == [
        (str(mine.uuid), "intranet.corp.test", 8443, True)
    ]
    assert "BEGIN CERTIFICATE" in work["ca_bundle"] and work["cadence"] == 300
    alice_client.post("/api/v1/agents/unassign/", {"servers": [str(mine.uuid)]}, content_type="application/json")
    assert enrolled.work().json()["targets"] == []


def test_the_work_list_comes_in_pages_the_agent_follows(settings, people, enrolled) -> None:
    """A team with many assigned servers: bounded pages in id order, `next` until the last."""
    settings.KEYCHEST_AGENT_WORK_PAGE = 3
    ca_bundle_create(team=people.team_a, name="corp", pem=self_signed(["corp-root"]).cert_pem)
    servers = [server_enrol(team=people.team_a, host=f"db{i}.corp.test:5432") for i in range(8)]
    Server.objects.filter(pk__in=[s.pk for s in servers]).update(agent=enrolled.agent)
    theirs = server_enrol(team=people.team_b, host="db0.corp.test:5432")
    pages = [enrolled.work().json()]
    while pages[-1]["next"]:
        answer = enrolled.client.get("/api/v1/agent/work", {"after": pages[-1]["next"]}, **enrolled.headers())
        assert answer.status_code == 200
        pages.append(answer.json())
    assert [len(p["targets"]) for p in pages] == [3, 3, 2]
    ids = [t["id"] for p in pages for t in p["targets"]]
    assert ids == sorted(str(s.uuid) for s in servers) and str(theirs.uuid) not in ids
    # The team's CAs and the ranges come once, on the first page.
    assert "BEGIN CERTIFICATE" in pages[0]["ca_bundle"] and "ranges" in pages[0]
    assert all("ca_bundle" not in p and "ranges" not in p for p in pages[1:])
    # A smaller page on request; never a larger one than the deployment's.
    assert len(enrolled.client.get("/api/v1/agent/work", {"limit": 2}, **enrolled.headers()).json()["targets"]) == 2
    assert len(enrolled.client.get("/api/v1/agent/work", {"limit": 900}, **enrolled.headers()).json()["targets"]) == 3
    for bad in ({"after": "not-a-cursor"}, {"limit": "-1"}, {"limit": "many"}):
        assert enrolled.client.get("/api/v1/agent/work", bad, **enrolled.headers()).status_code == 400


def test_servers_under_an_assigned_domain_go_to_the_agent(alice_client, people, enrolled) -> None:
    domain = domain_watch(team=people.team_a, domain="corp.test")
    before = server_enrol(team=people.team_a, host="old.corp.test")
    answer = alice_client.post(
        f"/api/v1/agents/{enrolled.agent.uuid}/assign/",
        {"domains": [str(domain.uuid)]},
        content_type="application/json",
    )
    assert answer.json() == {"servers": 1, "domains": 1}
    after = server_enrol(team=people.team_a, host="new.corp.test")
    elsewhere = server_enrol(team=people.team_a, host="corp.test.example")
    assert Server.objects.get(pk=before.pk).agent_id == enrolled.agent.pk
    assert after.agent_id == enrolled.agent.pk
    assert elsewhere.agent_id is None


# --- results: observations in, the server's own judgement out ----------------------------------
def test_results_of_a_private_server_are_stored_and_judged(settings, intranet, enrolled) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False  # the SaaS itself may not reach 127.0.0.1
    work = enrolled.work().json()
    results = lab_scan(work["targets"], work["ca_bundle"])
    answer = enrolled.report(results)
    assert answer.status_code == 200, answer.content
    assert answer.json()["accepted"] == [str(intranet.uuid)]
    row = ScanResult.objects.get(server=intranet, current=True, alternate=False)
    assert row.address == "127.0.0.1" and row.trusted is True and row.names == ["intranet.corp.test"]
    assert not Finding.objects.filter(server=intranet, resolved_at=None).exists()
    intranet.refresh_from_db()
    assert intranet.last_scan_at is not None and intranet.next_scan_at > timezone.now()
    assert enrolled.work().json()["targets"][0]["due"] is False


def test_a_forged_all_fine_verdict_is_ignored(lab, intranet, enrolled) -> None:
    """A hostile agent reports an expired self-signed certificate as trusted with no findings."""
    rogue = CA("Rogue Root").issue(
        ["intranet.corp.test"], not_before=now() - dt.timedelta(days=100), not_after=now() - dt.timedelta(days=10)
    )
    endpoint = lab.tls(rogue)
    Server.objects.filter(pk=intranet.pk).update(port=endpoint.port)
    item = lab_scan(
        [{"id": str(intranet.uuid), "host": "intranet.corp.test", "port": endpoint.port, "pinned_ip": "127.0.0.1"}]
    )[0]
    item["agent_verdict"] = {"127.0.0.1": {"trusted": True, "findings": []}}
    for probe in item["probes"]:
        probe.update(trusted=True, findings=[], expired=False)
    assert enrolled.report([item]).status_code == 200
    row = ScanResult.objects.get(server=intranet, current=True, alternate=False)
    assert row.trusted is False
    codes = set(Finding.objects.filter(server=intranet, resolved_at=None).values_list("code", flat=True))
    assert {"expired", "untrusted"} <= codes


def test_a_probe_claiming_success_without_a_chain_is_refused(intranet, enrolled) -> None:
    item = {"target": str(intranet.uuid), "probes": [{"address": "127.0.0.1", "tls_version": "TLSv1.3"}]}
    answer = enrolled.report([item]).json()
    assert answer["accepted"] == [] and "chain" in answer["refused"][0]["error"]
    assert not ScanResult.objects.filter(server=intranet).exists()


def test_an_agent_cannot_report_for_another_teams_or_unassigned_servers(people, enrolled, intranet) -> None:
    theirs = server_enrol(team=people.team_b, host="intranet.corp.test:443")
    unassigned = server_enrol(team=people.team_a, host="public.example:443")
    forged = {"target": "", "probes": [{"address": "127.0.0.1", "error_code": "connect_refused"}]}
    answer = enrolled.report([{**forged, "target": str(theirs.uuid)}, {**forged, "target": str(unassigned.uuid)}])
    assert answer.json()["refused"] == [
        {"target": str(theirs.uuid), "error": "not-found"},
        {"target": str(unassigned.uuid), "error": "not-found"},
    ]
    assert not ScanResult.objects.filter(server__in=[theirs, unassigned]).exists()


def test_an_oversized_batch_is_refused(enrolled) -> None:
    answer = enrolled.report([{"target": "x"}] * (agentwire.MAX_RESULTS_PER_BATCH + 1))
    assert answer.status_code == 400


# --- clock skew and silence ---------------------------------------------------------------------
def test_clock_skew_is_detected_and_reported(alice_client, enrolled) -> None:
    ahead = (now() + dt.timedelta(minutes=5)).isoformat()
    body = enrolled.work(HTTP_X_KEYCHEST_AGENT_TIME=ahead).json()
    assert 290 < body["clock_skew"] < 310
    shown = alice_client.get(f"/api/v1/agents/{enrolled.agent.uuid}/").json()
    assert shown["clock_skew_reported"] is True and 290 < shown["clock_skew"] < 310
    enrolled.work(HTTP_X_KEYCHEST_AGENT_TIME=now().isoformat())
    assert alice_client.get(f"/api/v1/agents/{enrolled.agent.uuid}/").json()["clock_skew_reported"] is False


def test_an_agent_silent_for_twice_its_cadence_raises_one_event(alice_client, enrolled) -> None:
    enrolled.work()
    start = timezone.now()
    with time_machine.travel(start + dt.timedelta(seconds=590), tick=False):
        assert agents_silent_check() == 0
    with time_machine.travel(start + dt.timedelta(seconds=610), tick=False):
        assert agents_silent_check() == 1
        assert agents_silent_check() == 0  # once per silence
        assert alice_client.get("/dashboard/").content.count(b'data-testid="agent-silent"') == 1
    event = Event.objects.get(kind="agent_silent")
    assert event.team_id == enrolled.agent.team_id and event.payload["name"] == "intranet"
    with time_machine.travel(start + dt.timedelta(seconds=620), tick=False):
        enrolled.work()  # heard from again: the next silence is a new event
    with time_machine.travel(start + dt.timedelta(seconds=1300), tick=False):
        assert agents_silent_check() == 1
    assert Event.objects.filter(kind="agent_silent").count() == 2


def test_enrolment_attempts_are_rate_limited_per_address(client) -> None:
    for _ in range(20):
        answer = client.post("/api/v1/agent/enrol", {"token": "kcat_wrong"}, content_type="application/json")
        assert answer.status_code == 400
    limited = client.post("/api/v1/agent/enrol", {"token": "kcat_wrong"}, content_type="application/json")
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0


def test_the_agent_and_range_lists_take_a_bounded_number_of_queries(
    alice_client, people, django_assert_max_num_queries
) -> None:
    from discovery.models import IPRange

    for n in range(5):
        agent, _ = agent_create(team=people.team_a, name=f"dc{n}")
        server = server_enrol(team=people.team_a, host=f"s{n}.corp.test")
        Server.objects.filter(pk=server.pk).update(agent=agent)
        IPRange.objects.create(team=people.team_a, cidr=f"10.{n}.0.0/24", ports=[443], agent=agent)
    with django_assert_max_num_queries(12):
        assert len(alice_client.get("/api/v1/agents/").json()["results"]) == 5
    with django_assert_max_num_queries(12):
        assert len(alice_client.get("/api/v1/ranges/").json()["results"]) == 5
    with django_assert_max_num_queries(14):
        assert alice_client.get("/agents/").status_code == 200


def test_scan_now_on_an_agents_server_makes_it_due_for_the_agent_only(alice_client, intranet, enrolled) -> None:
    Server.objects.filter(pk=intranet.pk).update(next_scan_at=timezone.now() + dt.timedelta(hours=8))
    assert enrolled.work().json()["targets"][0]["due"] is False
    answer = alice_client.post(f"/servers/{intranet.uuid}/scan/", follow=True)
    assert b"scanned by agent intranet" in answer.content
    assert b'data-testid="scanned-by-agent"' in answer.content
    assert enrolled.work().json()["targets"][0]["due"] is True
    # Nothing was scanned by the SaaS meanwhile (the task path skips the server too).
    assert not ScanResult.objects.filter(server=intranet).exists()


@pytest.mark.parametrize("protocol", ["smtp", "imap", "postgres"])
def test_the_agent_speaks_starttls_with_the_scanners_code(people, lab, enrolled, protocol) -> None:
    bundle = ca_bundle_create(team=people.team_a, name="lab root", pem=lab.root_pem)
    endpoint = lab.starttls(protocol, lab.leaf(["mail.corp.test"]), hosts=["127.0.0.7"])
    server = server_enrol(
        team=people.team_a,
        host=f"mail.corp.test:{endpoint.port}",
        protocol=protocol,
        pinned_ip="127.0.0.7",
        ca_bundle=bundle,
    )
    Server.objects.filter(pk=server.pk).update(agent=enrolled.agent)
    work = enrolled.work().json()
    assert work["targets"][0]["protocol"] == protocol
    assert enrolled.report(lab_scan(work["targets"], work["ca_bundle"])).json()["accepted"] == [str(server.uuid)]
    row = ScanResult.objects.get(server=server, current=True, alternate=False)
    assert row.trusted is True and row.names == ["mail.corp.test"]


def test_the_work_list_carries_only_the_own_teams_private_cas(people, enrolled) -> None:
    mine = self_signed(["corp-a-root"]).cert_pem
    theirs = self_signed(["corp-b-root"]).cert_pem
    ca_bundle_create(team=people.team_a, name="a", pem=mine)
    ca_bundle_create(team=people.team_b, name="b", pem=theirs)
    bundle = enrolled.work().json()["ca_bundle"]
    assert mine.strip() in bundle and theirs.strip() not in bundle


def test_results_travel_in_batches_under_the_request_size_limit() -> None:
    item = {"target": "x", "probes": [{"chain": ["A" * 30_000] * 3}]}
    split = agentwire.batches([item] * 100)
    assert sum(len(b) for b in split) == 100 and len(split) >= 10
    assert all(len(json.dumps({"results": b})) < 2_621_440 for b in split)
    assert [len(b) for b in agentwire.batches([{"target": "y"}] * 450)] == [200, 200, 50]


def test_unknown_or_malformed_agent_credentials_are_401(client, people) -> None:
    for header in ("Basic !!!", "Bearer kcag_unknown", "Bearer kcat_not_a_key", ""):
        answer = client.get("/api/v1/agent/work", HTTP_AUTHORIZATION=header)
        assert answer.status_code == 401 and answer["WWW-Authenticate"].startswith("Bearer")
