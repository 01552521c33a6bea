"""The package's layers point one way: a lower layer never imports a higher one (lazy imports
inside functions count too). Known breaches are listed with the issue that removes them; the
test fails on any new one, and on a listed one that is gone (so the list only shrinks)."""

from __future__ import annotations

import ast
from pathlib import Path

import mlplatform

PACKAGE = Path(mlplatform.__file__).parent
# Lowest first. A module's layer is that of its longest matching prefix.
LAYERS = [
    ("spec", "yamlmarks", "workspace", "tracking"),
    ("data", "validation", "features", "training", "evaluation", "packaging", "registry",
     "spec_draft", "alerts"),
    ("governance", "selection", "battery"),
    ("monitoring", "serving", "cluster"),
    ("jobs", "model_jobs"),
    ("cli", "cli_common", "cli_cluster", "cli_governance", "cli_monitoring", "cli_serving"),
]
# (importer, imported): breaches that the layers issue (18) removes.
KNOWN = {
    ("training.run", "jobs"),  # train_candidate is a job living in the library
    # The replay drives the training jobs; it gets its own driver above jobs.
    ("monitoring.cycle", "jobs"),
    ("monitoring.replay", "jobs"),
    ("monitoring.retrain", "jobs"),
    ("monitoring.retrain", "model_jobs"),
    # Latency is timed on the server's request path (ADR 0022): the request contract and
    # scorer belong below both packaging and serving.
    ("battery", "serving.scoring"),
    ("packaging.latency", "serving.scoring"),
    ("packaging.scoring_check", "serving.contract"),
}


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"mlplatform.{module} belongs to no layer: add it to LAYERS")


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
                found.add((module, imported.split(".")[0] if _layer(imported) >= 4 else imported))
    return found


def test_no_lower_layer_imports_a_higher_one():
    breaches = _breaches()
    new = sorted(breaches - KNOWN)
    assert not new, f"lower layers importing higher ones (fix, or say why in KNOWN): {new}"
    gone = sorted(KNOWN - breaches)
    assert not gone, f"these breaches are fixed: remove them from KNOWN: {gone}"


def test_the_registry_is_only_the_model_store():
    """Deciding who may become challenger or champion is governance's, in one place."""
    for _, path in _modules():
        if "registry" in path.parts:
            assert not {m for m in _imports(path) if m.split(".")[0] != "spec"
                        and m.split(".")[0] != "tracking" and m != "data.ingest"}, path
