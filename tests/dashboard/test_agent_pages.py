"""The agents page: create (token shown once), revoke, assign; members read, charlie gets 404."""

from __future__ import annotations

import re

import pytest

from agents.models import Agent
from agents.services import agent_create, agent_enrol, secret_hash
from monitors.models import Server
from monitors.services import server_enrol

pytestmark = pytest.mark.django_db


def test_an_admin_creates_an_agent_and_sees_the_token_once(alice_client, people) -> None:
    answer = alice_client.post("/agents/", {"name": "<b>dc1</b>", "cadence": 300})
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    token = re.search(rb"--token (kcat_[A-Za-z0-9_-]+)", answer.content).group(1).decode()
    agent = Agent.objects.get(team=people.team_a)
    assert agent.token_hash == secret_hash(token)
    assert b"&lt;b&gt;dc1&lt;/b&gt;" in answer.content and b"<b>dc1</b>" not in answer.content
    again = alice_client.get("/agents/")
    assert token.encode() not in again.content and b'data-testid="agent-token"' not in again.content
    assert b"waiting for enrolment" in again.content


def test_the_page_shows_version_and_clock_skew(alice_client, people) -> None:
    agent, token = agent_create(team=people.team_a, name="dc1")
    agent, _ = agent_enrol(token=token, version="0.1.0")
    Agent.objects.filter(pk=agent.pk).update(clock_skew=-420.0)
    page = alice_client.get("/agents/").content
    assert b"0.1.0" in page and b'data-testid="agent-skew"' in page and b"-420 s off" in page


def test_a_member_reads_but_cannot_create_revoke_or_assign(bob_client, people) -> None:
    agent, _ = agent_create(team=people.team_a, name="dc1")
    server = server_enrol(team=people.team_a, host="intranet.corp.test")
    assert bob_client.get("/agents/").status_code == 200
    assert bob_client.post("/agents/", {"name": "x", "cadence": 300}).status_code == 403
    assert bob_client.post(f"/agents/{agent.uuid}/revoke/").status_code == 403
    assert bob_client.post("/agents/assign/", {"server": server.uuid, "agent": agent.uuid}).status_code == 403
    agent.refresh_from_db()
    assert agent.revoked_at is None and Server.objects.get(pk=server.pk).agent_id is None


def test_charlie_gets_404_on_alices_agents_and_servers(charlie_client, people) -> None:
    agent, _ = agent_create(team=people.team_a, name="dc1")
    server = server_enrol(team=people.team_a, host="intranet.corp.test")
    assert charlie_client.post(f"/agents/{agent.uuid}/revoke/").status_code == 404
    assert charlie_client.post("/agents/assign/", {"server": server.uuid, "agent": ""}).status_code == 404
    theirs = server_enrol(team=people.team_b, host="intranet.corp.test")
    assert charlie_client.post("/agents/assign/", {"server": theirs.uuid, "agent": agent.uuid}).status_code == 404
    assert b"dc1" not in charlie_client.get("/agents/").content
    agent.refresh_from_db()
    assert agent.revoked_at is None and Server.objects.get(pk=theirs.pk).agent_id is None


def test_assign_and_revoke_from_the_page(alice_client, people) -> None:
    agent, _ = agent_create(team=people.team_a, name="dc1")
    server = server_enrol(team=people.team_a, host="intranet.corp.test")
    assert alice_client.post("/agents/assign/", {"server": server.uuid, "agent": agent.uuid}).status_code == 302
    assert Server.objects.get(pk=server.pk).agent_id == agent.pk
    assert alice_client.post("/agents/assign/", {"server": server.uuid, "agent": ""}).status_code == 302
    assert Server.objects.get(pk=server.pk).agent_id is None
    assert alice_client.post(f"/agents/{agent.uuid}/revoke/").status_code == 302
    agent.refresh_from_db()
    assert agent.revoked_at is not None
