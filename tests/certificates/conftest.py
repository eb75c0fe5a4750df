"""Fixtures for the certificate store: a lab CA that issues precertificate/certificate pairs."""

from __future__ import annotations

import pytest

from lab.ctlog.certgen import Issuer, make_ca


@pytest.fixture(scope="session")
def lab_root() -> Issuer:
    return make_ca("KeyChest Lab Root")


@pytest.fixture(scope="session")
def lab_ca(lab_root: Issuer) -> Issuer:
    return make_ca("KeyChest Lab Issuing CA", parent=lab_root)


@pytest.fixture
def ct_settings(settings, tmp_path):  # type: ignore[no-untyped-def]
    """Fast back-off and small chunks, and a log list file the tests fill with local logs
    (which listen on 127.0.0.1: a private address the CT client may then reach)."""
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
    settings.KEYCHEST_CT_BACKOFF_SECONDS = 0
    settings.KEYCHEST_CT_CHUNK = 100
    settings.KEYCHEST_CT_PARALLEL = 3
    settings.KEYCHEST_CT_TIMEOUT = 5
    settings.KEYCHEST_CT_LOG_LIST = str(tmp_path / "log_list.json")
    return settings


@pytest.fixture
def local_logs(ct_settings):  # type: ignore[no-untyped-def]
    """Start local CT logs on 127.0.0.1 and list them in KEYCHEST_CT_LOG_LIST: `local_logs("rfc6962", ...)`."""
    from lab.ctlog.server import LocalCTLog, write_log_list

    started: list[LocalCTLog] = []

    def start(*apis: str, **kwargs):  # type: ignore[no-untyped-def]
        new = [LocalCTLog(api=api, seed=len(started) + i + 1, **kwargs).start() for i, api in enumerate(apis)]
        started.extend(new)
        write_log_list(ct_settings.KEYCHEST_CT_LOG_LIST, started)
        return new if len(new) > 1 else new[0]

    yield start
    for log in started:
        log.stop()
