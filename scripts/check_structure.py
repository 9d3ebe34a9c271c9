"""Structure checks the linters do not make: no import cycle among the package's modules (runtime imports; the
layer and independence contracts are import-linter's, in pyproject.toml), and no module over MAX_LINES lines (a
module that grows past it holds more than one job: split it by role)."""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

MAX_LINES = 450
ROOT = Path(__file__).resolve().parent.parent / "responder"


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in graph.modules:
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def main() -> int:
    sys.setrecursionlimit(10_000)
    problems = [
        f"import cycle: {' -> '.join(c)}"
        for c in cycles(grimp.build_graph("responder", exclude_type_checking_imports=True))
    ]
    for path in sorted(ROOT.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            problems.append(f"{path.relative_to(ROOT.parent)}: {lines} lines (limit {MAX_LINES}: split it by role)")
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("structure OK: no import cycles, every module within the size limit")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
