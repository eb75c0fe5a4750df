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
