"""The code's shape, as docs/architecture.md promises it: layers without import circles, modules
under ~500 lines and functions under ~80 (or a comment saying why)."""

import ast
import collections
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "bayescal"
MODULE_LIMIT = 500
FUNCTION_LIMIT = 80
LONG_MODULES = {"models/_kernel.py"}  # the compiled kernel


def _modules():
    return sorted(p for p in ROOT.rglob("*.py"))


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The room a module belongs to: ``bayescal.<module or subpackage>``."""
    return ".".join(module.split(".")[:2])


def _import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for path in _modules():
        mod = _name(path)
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):  # module- and function-level imports
            if isinstance(node, ast.ImportFrom) and node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                targets = [".".join(base + [node.module])] if node.module else [
                    ".".join(base + [a.name]) for a in node.names]
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                targets = [n for n in names if n.startswith("bayescal.")]
            else:
                continue
            for t in targets:
                if _unit(t) != _unit(mod) and _unit(t) != "bayescal":
                    graph[_unit(mod)].add(_unit(t))
    return graph


def test_no_import_circles_between_rooms():
    graph = _import_graph()
    assert graph["bayescal.report"] and graph["bayescal.pipeline"]  # the graph is not empty

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    circles = sorted((a, b) for a in graph for b in graph[a] if a in reachable(b))
    assert not circles, f"import circles: {circles}"


def test_the_report_and_the_run_directory_never_import_the_pipeline():
    graph = _import_graph()
    assert "bayescal.pipeline" not in graph["bayescal.report"]
    assert "bayescal.pipeline" not in graph["bayescal.rundir"]
    assert "bayescal.report" not in graph["bayescal.rundir"]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_and_function_sizes(path):
    rel = str(path.relative_to(ROOT))
    text = path.read_text()
    if rel not in LONG_MODULES:
        assert len(text.splitlines()) <= MODULE_LIMIT, f"{rel}: {len(text.splitlines())} lines"
    lines = text.splitlines()
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        n = node.end_lineno - node.lineno + 1
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                first.value.value, str):
            n -= first.end_lineno - first.lineno + 1  # the docstring does not count
        body = "\n".join(lines[node.lineno - 1: node.end_lineno])
        assert n <= FUNCTION_LIMIT or "# why long:" in body, f"{rel}: {node.name} has {n} lines"
