"""KeyChest's verdict on every lab scenario agrees with OpenSSL's, or the scenario says why not;
and KeyChest reports exactly the scenario's findings. docs/scanner.md shows the same table."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import verdicts
from lab.scenarios import SCENARIOS, Scenario
from scripts.verdicts import BEGIN, END, ours

pytestmark = pytest.mark.django_db
DOC = Path(__file__).resolve().parents[2] / "docs" / "scanner.md"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.label)
def test_keychest_and_openssl_agree_or_the_difference_is_explained(lab, scenario: Scenario) -> None:
    ca_file = lab.folder / "verdict-test-root.pem"
    ca_file.write_text(lab.root_pem)
    endpoint = scenario.serve(lab)
    opinion, codes = ours(scenario, endpoint, lab.root_pem)
    assert set(codes) == scenario.expect
    row = verdicts.Row(scenario, opinion, codes, {"OpenSSL": verdicts.openssl(scenario, endpoint, ca_file)})
    assert row.agreement("OpenSSL") in ("agrees", "explained"), row.tools["OpenSSL"]
    if "openssl" in scenario.explained:  # an explanation for a difference that is gone is stale
        assert row.agreement("OpenSSL") == "explained"


def test_the_documented_table_lists_every_scenario() -> None:
    doc = DOC.read_text()
    table = doc[doc.index(BEGIN) : doc.index(END)]
    for scenario in SCENARIOS:
        assert f"| `{scenario.label}` |" in table, scenario.label
