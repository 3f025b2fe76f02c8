"""The architecture as a test (docs/architecture.md): layer folders, imports pointing down only,
no import cycles, no print outside the CLI, modules and functions of a readable size.

Imports are read with `ast` from every module of the package, including imports inside
functions and under `TYPE_CHECKING`: a lazy import that points up a layer is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "zoostore"

#: Layer of each top-level part of the package; a module may import its own layer and below.
LAYERS = {
    "core": 0,
    "storage": 1,
    "documents": 2,
    "repository": 3,
    "ops": 4,
    "integrations": 5,
    "zoofs": 5,
    "cli": 6,
    "testing": 6,
    "__init__": 7,
    "__main__": 7,
}
#: Edges that may not import each other although their layer numbers would allow it.
FORBIDDEN = {("cli", "testing"), ("testing", "cli"), ("integrations", "zoofs"), ("zoofs", "integrations")}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
#: A docstring or comment containing this phrase explains why a module or function is longer.
LONG_REASON = "longer than"


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def part(self) -> str:
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else "__init__"


def modules() -> list[Module]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1] if len(parts) > 2 else parts
        name = ".".join(parts)
        out.append(Module(name, path, ast.parse(path.read_text(encoding="utf-8"), str(path))))
    return out


MODULES = modules()
NAMES = {m.name for m in MODULES}


def _package_of(m: Module) -> str:
    return m.name if m.path.name == "__init__.py" else m.name.rpartition(".")[0]


def imports(m: Module) -> Iterator[tuple[str, int]]:
    """Every zoostore module `m` imports (resolved to a module of the package), with its line."""
    for node in ast.walk(m.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("zoostore"):
                    yield _existing(alias.name), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = _package_of(m).split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            if not base.startswith("zoostore"):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in NAMES else _existing(base)), node.lineno


def _existing(name: str) -> str:
    while name not in NAMES and "." in name:
        name = name.rpartition(".")[0]
    return name


def _part(name: str) -> str:
    parts = name.split(".")
    if parts == ["zoostore"]:
        return "__init__"
    return parts[1]


def test_every_module_sits_in_a_layer() -> None:
    unknown = sorted({m.name for m in MODULES if m.part not in LAYERS})
    assert not unknown, f"modules outside the layer folders (add them to docs/architecture.md): {unknown}"


def test_imports_point_down_only() -> None:
    bad = []
    for m in MODULES:
        for target, line in imports(m):
            src, dst = m.part, _part(target)
            if src == dst:
                continue
            if LAYERS[dst] > LAYERS[src] or (src, dst) in FORBIDDEN:
                bad.append(f"{m.path.relative_to(PACKAGE.parent)}:{line}: {m.name} ({src}) imports {target} ({dst})")
    assert not bad, "imports that point up a layer:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    graph = {m.name: {t for t, _ in imports(m) if t != m.name} for m in MODULES}
    # A package's __init__ runs before its modules; an edge module -> own package is no cycle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    cycles = _strongly_connected(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm; components of more than one module are cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_print_outside_the_cli() -> None:
    """Core code reports through a progress interface. The only other printers are the
    `main()`/`_main()` of tools run with `python -m zoostore.testing.X`."""
    bad = []
    for m in MODULES:
        if m.part in ("cli", "__main__"):
            continue
        allowed: set[int] = set()
        if m.part == "testing":
            for fn in ast.walk(m.tree):
                if isinstance(fn, ast.FunctionDef) and fn.name in ("main", "_main"):
                    allowed |= {n.lineno for n in ast.walk(fn) if hasattr(n, "lineno")}
        for node in ast.walk(m.tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
                    and node.lineno not in allowed):
                bad.append(f"{m.path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not bad, f"print() outside zoostore/cli: {bad}"


def test_modules_stay_under_500_lines_or_say_why() -> None:
    bad = []
    for m in MODULES:
        lines = len(m.path.read_text(encoding="utf-8").splitlines())
        doc = ast.get_docstring(m.tree) or ""
        if lines > MAX_MODULE_LINES and LONG_REASON not in doc:
            bad.append(f"{m.name}: {lines} lines")
    assert not bad, f"modules over {MAX_MODULE_LINES} lines whose docstring does not say why: {bad}"


def test_functions_stay_under_60_lines_or_say_why() -> None:
    bad = []
    for m in MODULES:
        source = m.path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(m.tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length <= MAX_FUNCTION_LINES:
                continue
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            around = "\n".join(source[max(0, first - 4): node.body[0].lineno + 2])
            doc = ast.get_docstring(node) or ""
            if LONG_REASON not in around and LONG_REASON not in doc:
                bad.append(f"{m.path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {length} lines")
    assert not bad, (f"functions over {MAX_FUNCTION_LINES} lines with no comment saying why "
                     f"(a comment or docstring containing {LONG_REASON!r}):\n" + "\n".join(bad))


@pytest.mark.parametrize("source, target, allowed", [
    ("zoostore.storage.blobs", "zoostore.documents.store_config", False),
    ("zoostore.ops.publish", "zoostore.integrations.onnx_check", False),
    ("zoostore.cli.sync", "zoostore.ops.sync", True),
    ("zoostore.core.names", "zoostore.core.errors", True),
])
def test_the_layer_rule_itself(source: str, target: str, allowed: bool) -> None:
    src, dst = _part(source), _part(target)
    assert (LAYERS[dst] <= LAYERS[src] and (src, dst) not in FORBIDDEN) is allowed


def test_docs_architecture_names_every_module() -> None:
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [str(m.path.relative_to(PACKAGE.parent)) for m in MODULES
               if f"`{m.path.relative_to(PACKAGE.parent)}`" not in doc]
    assert not missing, f"docs/architecture.md has no line for: {missing}"
