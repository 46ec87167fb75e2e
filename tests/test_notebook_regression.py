"""The regression copies in tests/notebooks/ match the notebooks and compare enough.

`pytest --nbval tests/notebooks/` (make test) re-executes the copies and compares their
outputs; this module checks what that comparison is worth: the copies are those of today's
notebooks (else `make regress-update`), every ignored cell says why, and at least half of the
cells with output, and at least one a notebook, are compared exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from notebook_regression import COPIES, SOURCE, ignored_with_reason

NOTEBOOKS = sorted(p.name for p in SOURCE.glob("[0-9][0-9]_*.ipynb"))


def _code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def test_every_notebook_has_a_copy_with_todays_sources() -> None:
    assert NOTEBOOKS and sorted(p.name for p in COPIES.glob("*.ipynb")) == NOTEBOOKS
    for name in NOTEBOOKS:
        ours = [_source(c) for c in _code_cells(SOURCE / name)]
        copy = [_source(c) for c in _code_cells(COPIES / name)]
        assert copy == ours, f"tests/notebooks/{name} is stale: run `make regress-update`"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ignored_cells_say_why_and_something_is_compared(name: str) -> None:
    with_output = [c for c in _code_cells(COPIES / name) if c.get("outputs")]
    compared = 0
    for cell in with_output:
        ignored, reason = ignored_with_reason(_source(cell))
        assert not ignored or reason, f"{name}: an ignored cell gives no reason:\n{_source(cell)}"
        compared += not ignored
    assert compared >= 1, f"{name}: no cell output is compared"


def test_at_least_half_of_the_outputs_are_compared_exactly() -> None:
    cells = [c for n in NOTEBOOKS for c in _code_cells(COPIES / n) if c.get("outputs")]
    compared = [c for c in cells if not ignored_with_reason(_source(c))[0]]
    assert len(cells) > 0 and len(compared) >= len(cells) / 2, (len(compared), len(cells))
