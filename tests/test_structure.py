"""The package's import graph: no nprnn import inside a function, and no cycle.

Every module of ``nprnn/`` is parsed (not imported). An import of an ``nprnn`` module inside a
function body hides a dependency from the reader and usually a cycle; optional heavy third-party
dependencies (matplotlib, TensorFlow, torch) may still be imported lazily. The module-level
imports between ``nprnn`` modules must form a directed acyclic graph. A submodule's implicit
import of its parent package is not an edge (Python loads ``nprnn/__init__.py`` first anyway).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nprnn"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(node: ast.AST, module: str) -> list[str]:
    """The nprnn modules an import statement loads (``from nprnn import x`` -> ``nprnn.x`` when
    ``x`` is a module, else ``nprnn``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "nprnn"]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative import: resolve against this module's package
        package = module.split(".")
        is_package = MODULES[module].name == "__init__.py"
        base = package if is_package else package[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if source.split(".")[0] != "nprnn":
        return []
    out = []
    for alias in node.names:
        full = f"{source}.{alias.name}"
        out.append(full if full in MODULES else source)
    return out


def _imports(module: str) -> tuple[set[str], list[str]]:
    """(module-level nprnn imports, nprnn imports found inside function bodies as 'line: name')."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    top, inside = set(), []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            for target in _targets(child, module):
                if in_function:
                    inside.append(f"{child.lineno}: {target}")
                elif target != module:
                    top.add(target)
            visit(child, nested)

    visit(tree, False)
    return top, inside


GRAPH = {m: _imports(m) for m in MODULES}


def test_the_parser_sees_the_core_layering():
    # The test must see real edges, or it could not catch a cycle.
    assert "nprnn._lstm" in GRAPH["nprnn.cells"][0]
    assert "nprnn._validate" in GRAPH["nprnn._lstm"][0]
    assert GRAPH["nprnn._lstm"][0] == {"nprnn._validate"}  # the maths is a leaf
    assert GRAPH["nprnn._validate"][0] == set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_nprnn_import_inside_functions(module):
    assert GRAPH[module][1] == [], f"{module} imports nprnn modules inside functions"


def test_import_graph_is_acyclic():
    state = {}  # module -> "visiting" | "done"

    def visit(module, path):
        if state.get(module) == "done":
            return
        if state.get(module) == "visiting":
            cycle = path[path.index(module) :] + [module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        state[module] = "visiting"
        for target in sorted(GRAPH[module][0]):
            visit(target, path + [module])
        state[module] = "done"

    for module in sorted(GRAPH):
        visit(module, [])


def test_cycle_detection_fails_on_a_cycle(monkeypatch):
    monkeypatch.setitem(GRAPH, "nprnn._validate", ({"nprnn.cells"}, []))
    with pytest.raises(pytest.fail.Exception, match="import cycle: .*nprnn._validate"):
        test_import_graph_is_acyclic()
