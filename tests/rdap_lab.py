"""The lab RDAP server as a pytest fixture, with KeyChest pointed at it (import `rdap_lab` into a test module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.rdap.server import LocalRDAP
from monitors.registrations import bootstrap_forget


@pytest.fixture
def rdap_lab(settings, tmp_path) -> Iterator[LocalRDAP]:
    with LocalRDAP() as server:
        settings.KEYCHEST_RDAP_BOOTSTRAP = str(server.write_bootstrap(tmp_path / "rdap-bootstrap.json"))
        settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True  # the lab listens on 127.0.0.1
        settings.KEYCHEST_RDAP_TIMEOUT = 5.0
        bootstrap_forget()
        yield server
    bootstrap_forget()
