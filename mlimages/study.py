"""Run the study: every numbered notebook in order, with papermill, into `runs/<profile>/`.

Each notebook gets `profile` (the profile file's absolute path, so it resolves the same
wherever the kernel starts) and `overrides`; each executed copy is kept, and the run stops
at the first failure with the notebook and the cell that failed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlimages.atomic import write_json_atomic
from mlimages.params import find_profile, load_params

KERNEL_NAME = "mlimages"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"


class StudyError(RuntimeError):
    """A notebook failed; the message names it, the failing cell and the executed copy."""


@dataclass(frozen=True)
class NotebookRun:
    notebook: str
    output: str
    seconds: float
    status: str


def default_notebooks_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "notebooks"


def study_notebooks(directory: Path, only: list[str] | None = None) -> list[Path]:
    """Numbered notebooks in order; `only` keeps those whose name starts with one of its items."""
    notebooks = sorted(directory.glob(NOTEBOOK_GLOB))
    if only:
        notebooks = [nb for nb in notebooks if nb.name.startswith(tuple(only))]
    if not notebooks:
        raise StudyError(f"no notebooks matching {NOTEBOOK_GLOB} (only={only}) in {directory}")
    return notebooks


def run_study(
    profile: str,
    overrides: dict[str, Any] | None = None,
    notebooks_dir: Path | None = None,
    only: list[str] | None = None,
    kernel_name: str | None = None,
    progress: bool | None = None,
) -> list[NotebookRun]:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    profile_path = find_profile(profile)
    params = load_params(profile_path, overrides)  # refuse bad parameters before any kernel starts
    out_dir = params.run_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    params.write(params.run_dir / "params.yaml")
    notebooks = study_notebooks(notebooks_dir or default_notebooks_dir(), only)
    show_cells = progress if progress is not None else sys.stderr.isatty()
    runs: list[NotebookRun] = []
    for number, notebook in enumerate(notebooks, start=1):
        output = out_dir / notebook.name
        print(f"[{number}/{len(notebooks)}] {notebook.name} -> {output}", flush=True)
        started = time.monotonic()
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters={"profile": str(profile_path), "overrides": dict(overrides or {})},
                kernel_name=kernel_name,
                cwd=str(notebook.parent),
                progress_bar=show_cells,
            )
        except PapermillExecutionError as exc:
            runs.append(
                NotebookRun(notebook.name, str(output), time.monotonic() - started, "failed")
            )
            _write_summary(params.run_dir, profile_path, runs)
            raise StudyError(
                f"{notebook.name}: cell {exc.cell_index} (execution count {exc.exec_count}) "
                f"failed with {exc.ename}: {exc.evalue}\n  executed copy: {output}"
            ) from None
        except Exception as exc:  # a kernel that cannot start, a notebook that is not JSON, …
            runs.append(
                NotebookRun(notebook.name, str(output), time.monotonic() - started, "failed")
            )
            _write_summary(params.run_dir, profile_path, runs)
            raise StudyError(
                f"{notebook.name}: could not run: {type(exc).__name__}: {exc}"
            ) from exc
        seconds = time.monotonic() - started
        runs.append(NotebookRun(notebook.name, str(output), seconds, "ok"))
        print(f"      ok in {seconds:.1f} s", flush=True)
    _write_summary(params.run_dir, profile_path, runs)
    return runs


def _write_summary(run_dir: Path, profile_path: Path, runs: list[NotebookRun]) -> None:
    write_json_atomic(
        run_dir / "study.json",
        {"profile": str(profile_path), "notebooks": [asdict(r) for r in runs]},
    )
