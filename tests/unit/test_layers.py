"""The package's layers point one way: a lower layer never imports a higher one (lazy imports
inside functions count too). Known breaches are listed with the issue that removes them; the
test fails on any new one, and on a listed one that is gone (so the list only shrinks). No two
modules import each other, directly or around a loop."""

from __future__ import annotations

import ast
from pathlib import Path

import mlplatform

PACKAGE = Path(mlplatform.__file__).parent
# Lowest first. A module's layer is that of its longest matching dotted prefix, so a
# sub-package can sit above its parent (the replay drives the jobs; production monitoring
# does not).
LAYERS = [
    ("spec", "yamlmarks", "workspace", "tracking"),
    ("data", "validation", "features", "training", "evaluation", "packaging", "registry",
     "spec_draft", "alerts"),
    ("governance", "selection", "battery"),
    ("monitoring", "serving", "release", "cluster", "spark"),
    ("jobs",),
    ("monitoring.replay",),
    ("cli",),
]
# (importer, imported layer's module): breaches still to remove, each with its reason.
KNOWN: set[tuple[str, str]] = set()


def _layer(module: str) -> int:
    best, best_len = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = i, len(name)
    if best is None:
        raise AssertionError(f"mlplatform.{module} belongs to no layer: add it to LAYERS")
    return best


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("mlplatform."):
                out.add(node.module.removeprefix("mlplatform."))
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("mlplatform.") for a in node.names
                    if a.name.startswith("mlplatform.")}
    return out


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        if parts:
            yield ".".join(parts), path


def _breaches() -> set[tuple[str, str]]:
    found = set()
    for module, path in _modules():
        for imported in _imports(path):
            if _layer(imported) > _layer(module):
                found.add((module, imported))
    return found


def test_no_lower_layer_imports_a_higher_one():
    breaches = _breaches()
    new = sorted(breaches - KNOWN)
    assert not new, f"lower layers importing higher ones (fix, or say why in KNOWN): {new}"
    gone = sorted(KNOWN - breaches)
    assert not gone, f"these breaches are fixed: remove them from KNOWN: {gone}"


def _module_graph() -> dict[str, set[str]]:
    """Each module's imports of other package modules (`from mlplatform.x import y` counts as
    an import of x.y when y is a module)."""
    modules = dict(_modules())
    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                name = name.removeprefix("mlplatform.")
                if name in modules and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_import_cycles():
    """A loop of imports (lazy ones included) means two modules share one responsibility."""
    assert not _cycles(_module_graph())


def test_the_cycle_finder_finds_a_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_registry_is_only_the_model_store():
    """Deciding who may become challenger or champion is governance's, in one place."""
    for _, path in _modules():
        if "registry" in path.parts:
            assert not {m for m in _imports(path) if m.split(".")[0] != "spec"
                        and m.split(".")[0] != "tracking" and m != "data.ingest"}, path
