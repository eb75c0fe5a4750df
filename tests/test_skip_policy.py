"""tests/skip_policy.py, run as the plugin of an inner pytest: in CI an unexpected skip fails the
run and every slow test runs; locally the same skip is named in one line and the run passes."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INNER = """
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("needs a thing this machine lacks")

@pytest.mark.slow
def test_slow():
    pass
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    pytester.makepyfile(test_inner=INNER)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("CI", raising=False)

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            "-p", "tests.skip_policy", "-p", "no:django", "-p", "no:cacheprovider", "-p", "no:xdist", *args
        )

    return run


def test_in_ci_an_unexpected_skip_fails_the_run(inner, monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = inner()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "skipped 1: 1 needs a thing this machine lacks",
            "CI: unexpected skip *test_inner.py::test_skips: needs a thing this machine lacks",
            "CI: 1 unexpected skip(s) fail this run",
        ]
    )


def test_locally_the_skip_is_named_in_one_line_and_the_run_passes(inner) -> None:
    result = inner()
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["skipped 1: 1 needs a thing this machine lacks"])
    assert "CI:" not in result.stdout.str()


def test_in_ci_a_skip_on_the_allow_list_passes(inner, pytester, monkeypatch) -> None:
    pytester.makeconftest(
        """
import tests.skip_policy as policy
policy.ALLOWED_IN_CI[(r"test_inner.py::test_skips$", r"machine lacks")] = "a reason that holds on CI"
"""
    )
    monkeypatch.setenv("CI", "true")
    assert inner().ret == pytest.ExitCode.OK


def test_in_ci_every_slow_test_runs_whatever_the_sample(inner, monkeypatch) -> None:
    monkeypatch.setenv("KEYCHEST_SLOW_SAMPLE", "0")
    local = inner("-rs")
    local.stdout.fnmatch_lines(["*slow test not in this sample*"])
    local.assert_outcomes(passed=1, skipped=2)
    monkeypatch.setenv("CI", "true")
    inner().assert_outcomes(passed=2, skipped=1)
