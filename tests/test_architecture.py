"""The package's layout as ARCHITECTURE.md draws it: stages import only stages below them."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlimages"
# Lowest first: a subpackage may import its own modules and those of the subpackages before it.
LAYERS = (
    "core",
    "paper",
    "config",
    "data",
    "fetch",
    "input",
    "train",
    "evaluate",
    "report",
    "study",
)
TOP = {"cli", "__main__", "__init__"}  # the package's face: assembles the layers
LIMIT = 500  # lines a module; a longer one says why in a "Longer than" line of its docstring


@functools.cache
def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts)] = path
    return found


def imported(path: Path) -> set[str]:
    """Every mlimages module `path` imports, at any depth (lazy imports count as well)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("mlimages.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if node.module == "mlimages" or (node.module or "").startswith("mlimages."):
                for alias in node.names:  # `from mlimages.pkg import module` imports the module
                    sub = f"{node.module}.{alias.name}".removeprefix("mlimages.")
                    names.add(sub if sub in modules() else node.module)
    return {n.removeprefix("mlimages.") for n in names}


def layer(module: str) -> int:
    head = module.split(".")[0]
    return len(LAYERS) if head in TOP else LAYERS.index(head)


def test_every_module_belongs_to_a_layer() -> None:
    strays = [m for m in modules() if m.split(".")[0] not in (*LAYERS, *TOP)]
    assert not strays, f"modules outside the layers {LAYERS}: {strays}"


def test_no_import_runs_up_a_layer() -> None:
    upward = [
        f"{m} imports {target}"
        for m, path in modules().items()
        for target in imported(path)
        if layer(target) > layer(m)
    ]
    assert not upward, "imports from a lower stage to a higher one:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    graph = {m: {t for t in imported(p) if t in modules()} for m, p in modules().items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_long_modules_say_why() -> None:
    long = []
    for m, path in modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > LIMIT and "Longer than" not in doc:
            long.append(f"{m} ({lines} lines)")
    assert not long, f"modules over {LIMIT} lines without a reason at their top: {long}"
