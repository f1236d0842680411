"""Fail when a function in recspark/ is longer than MAX_LINES lines of code (docstring excluded).

Stage functions read, transform, validate and write in short steps (DESIGN.md); a long function
is a sign that steps are mixed. Declarative functions (a parser, a schema) may be longer and are
listed in DECLARATIVE. Run by `make lint`.

Usage: python scripts/check_function_length.py [PACKAGE_DIR]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 60
DECLARATIVE = {
    "recspark/cli.py:build_parser",  # argparse: one add_argument per option
}


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the `def` to the end of the body, without the docstring."""
    total = (node.end_lineno or node.lineno) - node.lineno + 1
    first = node.body[0]
    is_docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    if is_docstring:
        total -= (first.end_lineno or first.lineno) - first.lineno + 1
    return total


def long_functions(root: Path) -> list[tuple[str, int]]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{path.relative_to(root.parent).as_posix()}:{node.name}"
                if code_lines(node) > MAX_LINES and name not in DECLARATIVE:
                    found.append((f"{name} (line {node.lineno})", code_lines(node)))
    return found


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "recspark").resolve()
    found = long_functions(root)
    for name, lines in found:
        print(f"{name}: {lines} lines of code, more than {MAX_LINES}; split it into steps")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
