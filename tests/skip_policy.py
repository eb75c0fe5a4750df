"""No silent loss: what skipped is named, in CI a skip not on the allow-list fails the run, and
every slow test runs in CI.

Locally a run ends with one line naming every skip reason and how many tests it skipped. With
`CI=true` (as `.ci/run` sets it) every skip must match `ALLOWED_IN_CI`, or the run exits
non-zero even when every test that ran passed. CI has PostgreSQL, Redis, Chromium, PgBouncer
and promtool, so nothing in the suite has a reason to skip there: the list starts empty, and an
entry needs a reason that holds on CI's machine, not just "it is slow" or "it is flaky".
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import pytest

# (node id regex, skip reason regex) -> why this skip is expected even on CI's machine.
ALLOWED_IN_CI: dict[tuple[str, str], str] = {}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def allowed(nodeid: str, reason: str) -> bool:
    return any(re.search(node, nodeid) and re.search(why, reason) for node, why in ALLOWED_IN_CI)


@dataclass
class Skips:
    """The skips of one run: (node id, reason), in the order they happened."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    def unexpected(self) -> list[tuple[str, str]]:
        return [(node, reason) for node, reason in self.seen if not allowed(node, reason)]

    def summary(self) -> str:
        counts = Counter(reason for _node, reason in self.seen)
        parts = [f"{n} {reason}" for reason, n in counts.most_common()]
        return f"skipped {len(self.seen)}: " + "; ".join(parts)


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ").strip()


_skips = Skips()


def pytest_configure(config: pytest.Config) -> None:
    global _skips
    _skips = Skips()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # With xdist the controller sees every worker's reports. An xfail is an expectation, not a skip.
    if report.skipped and not hasattr(report, "wasxfail"):
        _skips.seen.append((report.nodeid, _reason(report)))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if in_ci() and _skips.unexpected() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    skips = _skips
    if not skips.seen:
        terminalreporter.write_line("skipped 0")
        return
    terminalreporter.write_line(skips.summary())
    if in_ci():
        unexpected = skips.unexpected()
        for node, reason in unexpected:
            terminalreporter.write_line(
                f"CI: unexpected skip (not in tests/skip_policy.py ALLOWED_IN_CI): {node}: {reason}"
            )
        if unexpected:
            terminalreporter.write_line(f"CI: {len(unexpected)} unexpected skip(s) fail this run", red=True)


# --- slow tests: all run by default and always in CI; a local run may sample them -------------
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """KEYCHEST_SLOW_SAMPLE=0.3 runs about 30 % of the slow tests (KEYCHEST_SLOW_SEED picks
    which); unset or `all` runs every one. CI ignores it: a broken slow test must not survive a
    run by luck. The sampled-out tests are skips, so the summary line names them."""
    sample = os.environ.get("KEYCHEST_SLOW_SAMPLE", "all").strip().lower()
    if sample == "all" or in_ci():
        return
    fraction = float(sample)
    seed = os.environ.get("KEYCHEST_SLOW_SEED", "keychest")
    skip = pytest.mark.skip(reason=f"slow test not in this sample (KEYCHEST_SLOW_SAMPLE={sample})")
    for item in items:
        if item.get_closest_marker("slow") is None:
            continue
        digest = hashlib.sha256(f"{seed}:{item.nodeid}".encode()).digest()
        if digest[0] / 256 >= fraction:
            item.add_marker(skip)
