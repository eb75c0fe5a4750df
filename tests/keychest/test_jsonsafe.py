"""keychest.jsonsafe: JSON with bounded nesting (security finding 10)."""

from __future__ import annotations

import json

import pytest

from keychest import jsonsafe
from monitors.rdap import MALFORMED, RdapError, parse_domain


def test_ordinary_documents_parse_as_json_does() -> None:
    text = '{"a": [1, 2, {"b": null}], "c": "[[[[{{{{"}'
    assert jsonsafe.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["[" * 200_000, "[" * 5_000 + "]" * 5_000, '{"a":' * 3_000 + "1" + "}" * 3_000])
def test_deep_documents_are_a_value_error_not_a_recursion_error(text) -> None:
    with pytest.raises(jsonsafe.JSONTooDeep):
        jsonsafe.loads(text)


def test_the_depth_limit_is_exact() -> None:
    at_limit = "[" * jsonsafe.MAX_DEPTH + "]" * jsonsafe.MAX_DEPTH
    assert jsonsafe.loads(at_limit) is not None
    with pytest.raises(jsonsafe.JSONTooDeep):
        jsonsafe.loads("[" + at_limit + "]")


def test_brackets_inside_strings_do_not_count() -> None:
    assert jsonsafe.loads(json.dumps(["[" * 10_000])) == ["[" * 10_000]


def test_constants_are_refused_unless_asked_for() -> None:
    with pytest.raises(ValueError):
        jsonsafe.loads("[NaN]")
    assert jsonsafe.loads("[1]", strict_constants=False) == [1]


def test_a_hostile_rdap_answer_is_malformed_not_a_crash() -> None:
    with pytest.raises(RdapError) as caught:
        parse_domain(b"[" * 200_000, "example.com")
    assert caught.value.code == MALFORMED
