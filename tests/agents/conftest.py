"""Fixtures of the agent tests: the agent package (agent/) importable as installed, an enrolled agent."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
# `pip install ./agent` installs keychest_agent and the repository's kcproto; in the tests the
# same packages come from the source tree.
if str(ROOT / "agent") not in sys.path:
    sys.path.insert(0, str(ROOT / "agent"))


@dataclass
class Enrolled:
    agent: object
    key: str
    client: Client

    def headers(self, **extra: str) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.key}", **extra}

    def work(self, **extra: str):  # type: ignore[no-untyped-def]
        return self.client.get("/api/v1/agent/work", **self.headers(**extra))

    def report(self, results: object, **extra: str):  # type: ignore[no-untyped-def]
        return self.client.post(
            "/api/v1/agent/results", {"results": results}, content_type="application/json", **self.headers(**extra)
        )


@pytest.fixture
def enrolled(people) -> Enrolled:  # type: ignore[no-untyped-def]
    from agents.services import agent_create, agent_enrol

    agent, token = agent_create(team=people.team_a, name="intranet")
    agent, key = agent_enrol(token=token, version="test")
    return Enrolled(agent=agent, key=key, client=Client())
