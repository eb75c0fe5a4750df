"""JSON from strangers (request bodies, answers of outside servers) with its nesting bounded.

CPython's decoder recurses once per level, so `"[" * 200000` raises RecursionError: an
unhandled 500 in a view, a crashed task in a worker. `loads` turns that into a ValueError like
any other malformed JSON, and refuses documents nested deeper than `MAX_DEPTH` even when the
interpreter could parse them (no KeyChest document needs more than a handful of levels).
The decoder itself stops at the interpreter's recursion limit (about a thousand levels), so the
depth check after parsing walks a bounded structure.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


class JSONTooDeep(ValueError):
    """The document nests arrays and objects deeper than allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")


def _no_constants(name: str) -> Any:
    raise ValueError(f"Out of range float values are not JSON compliant: {name!r}")


def depth_exceeds(value: Any, limit: int) -> bool:
    """True when lists and dicts nest deeper than `limit` levels (a scalar is depth 0)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item  # type: ignore[assignment]
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH, strict_constants: bool = True) -> Any:
    """`json.loads`, raising ValueError (JSONTooDeep) for documents nested deeper than `max_depth`.

    `strict_constants` refuses NaN and Infinity, as DRF's parser does (they are not JSON).
    """
    try:
        value = json.loads(text, parse_constant=_no_constants if strict_constants else None)
    except RecursionError:
        raise JSONTooDeep(max_depth) from None
    if depth_exceeds(value, max_depth):
        raise JSONTooDeep(max_depth)
    return value
