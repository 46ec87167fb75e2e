"""A rerun of the whole smoke study on this machine regenerates the same tables.

Slow (two complete studies, about 3-5 minutes): `make test-slow` runs it; `make test` runs
the smoke study once through nbval.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TABLES = ("report/*.csv", "report/*.md", "report/*.tex", "finetune/ckpt*/results.csv",
          "evaluate/*.csv")  # fmt: skip


@pytest.mark.slow
def test_two_smoke_studies_give_identical_tables(tmp_path: Path) -> None:
    roots = []
    for name in ("first", "second"):
        env = {**os.environ, "MLIMAGES_RUNS": str(tmp_path / name)}
        subprocess.run(
            [sys.executable, "-m", "mlimages", "study", "--params", "smoke"],
            env=env, check=True, capture_output=True, timeout=1800,
        )  # fmt: skip
        roots.append(tmp_path / name / "smoke")
    first = sorted(p.relative_to(roots[0]) for pattern in TABLES for p in roots[0].glob(pattern))
    second = sorted(p.relative_to(roots[1]) for pattern in TABLES for p in roots[1].glob(pattern))
    assert first == second and len(first) >= 15
    differing = [
        str(p) for p in first if (roots[0] / p).read_bytes() != (roots[1] / p).read_bytes()
    ]
    assert not differing, f"tables differ between two identical runs: {differing}"
