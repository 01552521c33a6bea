"""The committed notebooks carry no outputs and start with a parameters cell the tests (and a
user) can override."""

from __future__ import annotations

import nbformat
import pytest

from .test_notebooks import CHECKS, NOTEBOOKS, SMALL, _notebook


def test_the_notebooks_are_all_here():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(SMALL) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_committed_notebook_has_no_outputs(name):
    nb = _notebook(name)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name} cell {i} has outputs: clear them before commit"
            assert cell.execution_count is None, f"{name} cell {i} has an execution count"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_starts_with_a_parameters_cell(name):
    code = [c for c in _notebook(name).cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), f"{name}: first code cell"
    for param in ("SAMPLE_ROWS", "HOME", *SMALL[name]):
        assert f"{param} = " in code[0].source, f"{name}: no {param} in the parameters cell"
