"""Notebook regression copies: the notebooks executed on the smoke profile, outputs kept.

`notebooks/` stays stripped for editing; `tests/notebooks/` holds the same notebooks executed
in order on the `smoke` profile (what `pytest --nbval tests/notebooks/` re-executes and
compares, through `tests/notebooks/sanitize.cfg`): `make regress` runs `check`, and `make
regress-update` runs `update` after an intended change. Cells whose output depends on
floating-point training results carry `# NBVAL_IGNORE_OUTPUT` and, on the next line, a
comment saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "notebooks"
COPIES = ROOT / "tests" / "notebooks"
IGNORE = "# NBVAL_IGNORE_OUTPUT"
# TensorFlow's C++ start-up lines ("oneDNN custom operations are on"), written to the process's
# stderr before any setting can silence them; a kernel captures them or not depending on how
# it was started (nbclient does, nbval does not), so the copies never hold them.
TF_LOG = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\).*|[IWE]\d{4} .*)$")
KERNEL = "mlimages"


def environment(runs: Path) -> dict[str, str]:
    """What both the update and the test (Makefile, `regress`) run with: the smoke profile,
    a runs folder of its own, no progress bars (headless kernels) and no TensorFlow logs."""
    return {
        "MLIMAGES_PROFILE": "smoke",
        "MLIMAGES_RUNS": str(runs),
        "MLIMAGES_HEADLESS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_ENABLE_ONEDNN_OPTS": "1",  # set: TensorFlow then does not log that it is on
    }


def update(dest: Path = COPIES, timeout: int = 900) -> list[Path]:
    """Execute every numbered notebook in order into `dest`, outputs kept (write, then
    rename, so a failed update leaves the old copies)."""
    import nbformat
    from nbclient import NotebookClient

    runs = Path(tempfile.mkdtemp(prefix="regress-runs-"))
    os.environ.update(environment(runs))
    staged = Path(tempfile.mkdtemp(prefix="regress-copies-"))
    written = []
    try:
        for source in sorted(SOURCE.glob("[0-9][0-9]_*.ipynb")):
            nb = nbformat.read(source, as_version=4)
            NotebookClient(
                nb, kernel_name=KERNEL, timeout=timeout, resources={"metadata": {"path": SOURCE}}
            ).execute()
            nbformat.write(without_tensorflow_logs(nb), staged / source.name)
            written.append(dest / source.name)
            print(f"executed {source.name}", flush=True)
        dest.mkdir(parents=True, exist_ok=True)
        for path in sorted(staged.glob("*.ipynb")):
            os.replace(path, dest / path.name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        shutil.rmtree(runs, ignore_errors=True)
    return written


def without_tensorflow_logs(nb):
    """`nb` without the stderr outputs that hold only TensorFlow's start-up log lines."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [
            out
            for out in cell.outputs
            if not (
                out.output_type == "stream"
                and out.name == "stderr"
                and all(TF_LOG.match(line) for line in out.text.splitlines() if line.strip())
            )
        ]
    return nb


def ignored_with_reason(source: str) -> tuple[bool, str | None]:
    """(cell ignored, its reason): the marker line and the comment that follows it."""
    lines = [line.strip() for line in source.splitlines()]
    if IGNORE not in lines:
        return False, None
    after = lines[lines.index(IGNORE) + 1 :]
    reason = after[0].lstrip("#").strip() if after and after[0].startswith("#") else None
    return True, reason or None


def check(copies: Path = COPIES) -> int:
    """`pytest --nbval` over the copies, in a fresh runs folder; pytest's exit status."""
    runs = Path(tempfile.mkdtemp(prefix="regress-runs-"))
    try:
        command = [
            sys.executable, "-m", "pytest", "-q", "--nbval", "--timeout=900",
            "--nbval-sanitize-with", str(copies / "sanitize.cfg"), "-p", "no:cacheprovider",
            str(copies),
        ]  # fmt: skip
        return subprocess.call(command, env={**os.environ, **environment(runs)}, cwd=ROOT)
    finally:
        shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    verb = sys.argv[1] if len(sys.argv) > 1 else ""
    if verb == "check":
        sys.exit(check())
    if verb == "update":
        for path in update(Path(sys.argv[2]) if len(sys.argv) > 2 else COPIES):
            print(path)
        sys.exit(0)
    sys.exit(f"usage: {sys.argv[0]} check | update [FOLDER]")
