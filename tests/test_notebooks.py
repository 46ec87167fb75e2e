"""Notebook conventions: thin, parameterised, stripped; nbval executes them in `make test`."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from mlimages.study.notebook import COMMON, NOTEBOOK_PARAMETERS
from mlimages.study.runner import KERNEL_NAME

NOTEBOOKS = sorted(
    (Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb")
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_conventions(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == KERNEL_NAME, "one kernel name everywhere"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, "outputs stripped"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one parameters cell"
    tree = ast.parse(tagged[0].source)
    names = []
    for node in tree.body:
        assert isinstance(node, ast.Assign), "the parameters cell holds assignments only"
        ast.literal_eval(node.value)  # literals only: raises on anything computed
        names += [t.id for t in node.targets]
    assert names[0] == "profile" and "overrides" in names
    stage_calls = [c.source for c in code if "notebook.stage_params(" in c.source]
    assert stage_calls, "parameters are resolved through mlimages.study.notebook.stage_params"
    stage = stage_calls[0].split("stage_params(")[1].split(",")[0].strip().strip("\"'")
    assert set(names) == {*COMMON, *NOTEBOOK_PARAMETERS.get(stage, {})}
