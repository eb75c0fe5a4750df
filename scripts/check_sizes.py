#!/usr/bin/env python
"""Size limits of docs/architecture.md: no module over 600 lines, no function over 80.

    python scripts/check_sizes.py [ROOT]

Walks every .py file under ROOT (the repository by default; migrations, which Django writes, and
virtual environments are left out), prints each module or function over its limit with its
length, and exits 1 if there is any. `make test` and `make lint` run it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MODULE_LINES = 600
FUNCTION_LINES = 80
SKIPPED = {".venv", "venv", "migrations", "node_modules", ".git", "var", "staticfiles"}


def oversized(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if SKIPPED.intersection(relative.parts):
            continue
        source = path.read_text(encoding="utf-8")
        lines = source.count("\n")
        if lines > MODULE_LINES:
            found.append(f"{relative}: module of {lines} lines (limit {MODULE_LINES})")
        for node in ast.walk(ast.parse(source, filename=str(relative))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES:
                    found.append(f"{relative}:{node.lineno}: {node.name} is {length} lines (limit {FUNCTION_LINES})")
    return found


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    found = oversized(root)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
