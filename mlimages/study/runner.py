"""Run the study: every numbered notebook in order, with papermill, into `runs/<profile>/`.

The profile's inputs are checked first (mlimages.config.preflight): a missing label list or target
task stops the study before any notebook starts, naming every missing input. Each notebook
gets `profile` (the profile file's absolute path, so it resolves the same wherever the
kernel starts) and `overrides`; each executed copy is kept, and the run stops at the first
failure with the notebook and the cell that failed.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlimages.config import layout, preflight
from mlimages.config.params import find_profile, load_params
from mlimages.core.atomic import write_json_atomic
from mlimages.core.progress import HEADLESS_ENV

KERNEL_NAME = "mlimages"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
REPEAT_KEY = "mlimages"  # notebook metadata: {"mlimages": {"repeat": {"ckpt": [1, 2]}}}
ON_REQUEST = "on_request"  # {"mlimages": {"on_request": true}}: run only when `only` names it


class StudyError(RuntimeError):
    """A notebook failed; the message names it, the failing cell and the executed copy."""


@dataclass(frozen=True)
class NotebookRun:
    notebook: str
    output: str
    seconds: float
    status: str


def default_notebooks_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "notebooks"


def study_notebooks(directory: Path, only: list[str] | None = None) -> list[Path]:
    """Numbered notebooks in order; `only` keeps those whose name starts with one of its items.
    Without `only`, notebooks marked on request (the experiments, which take far longer than
    the study) are left out."""
    notebooks = sorted(directory.glob(NOTEBOOK_GLOB))
    if only:
        notebooks = [nb for nb in notebooks if nb.name.startswith(tuple(only))]
    else:
        notebooks = [nb for nb in notebooks if not _metadata(nb).get(ON_REQUEST, False)]
    if not notebooks:
        raise StudyError(f"no notebooks matching {NOTEBOOK_GLOB} (only={only}) in {directory}")
    return notebooks


def _metadata(notebook: Path) -> dict[str, Any]:
    """The notebook's `metadata.mlimages` mapping (empty when it has none)."""
    try:
        metadata = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
    except json.JSONDecodeError as exc:
        raise StudyError(f"{notebook}: not a JSON notebook ({exc})") from None
    return metadata.get(REPEAT_KEY, {})


def notebook_runs(
    notebook: Path, repeat: dict[str, list[Any]] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(executed copy's name, extra parameters) for each run of a notebook: one plain run, or
    one per value of its `metadata.mlimages.repeat` (e.g. notebook 05 once per checkpoint,
    into `05_finetune-ckpt3.ipynb`). `repeat` replaces the lists of the parameters it names
    (a sweep that needs checkpoint 2 only); a name the notebook does not repeat is refused."""
    declared = _metadata(notebook).get("repeat")
    if repeat:
        unknown = sorted(set(repeat) - set(declared or {}))
        if unknown:
            raise StudyError(
                f"{notebook.name}: repeat {unknown} not among its repeated parameters "
                f"{sorted(declared or {})}"
            )
        declared = {**declared, **repeat}
    repeat = declared
    if not repeat:
        return [(notebook.name, {})]
    if not isinstance(repeat, dict) or not all(isinstance(v, list) and v for v in repeat.values()):
        raise StudyError(
            f"{notebook}: metadata.{REPEAT_KEY}.repeat = {repeat!r}; "
            "expected a mapping of parameter names to non-empty lists"
        )
    runs = []
    for values in itertools.product(*repeat.values()):
        extra = dict(zip(repeat, values, strict=True))
        suffix = "-".join(f"{k}{v}" for k, v in extra.items())
        runs.append((f"{notebook.stem}-{suffix}{notebook.suffix}", extra))
    return runs


def run_study(
    profile: str,
    overrides: dict[str, Any] | None = None,
    notebooks_dir: Path | None = None,
    only: list[str] | None = None,
    kernel_name: str | None = None,
    progress: bool | None = None,
    repeat: dict[str, dict[str, list[Any]]] | None = None,
) -> list[NotebookRun]:
    """Execute the notebooks in order into `<run folder>/notebooks/`; `repeat` maps a notebook
    name's prefix (e.g. "05") to the repeated parameters' values to run instead of its own."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    profile_path = find_profile(profile)
    params = load_params(profile_path, overrides)  # refuse bad parameters before any kernel starts
    notebooks = study_notebooks(notebooks_dir or default_notebooks_dir(), only)
    # Every missing input of the stages to run, named before the first notebook starts.
    preflight.require(params, preflight.stages_of([nb.name for nb in notebooks]))
    out_dir = params.run_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    params.write(params.run_dir / layout.PARAMS_FILE)
    jobs = [
        (nb, name, extra)
        for nb in notebooks
        for name, extra in notebook_runs(nb, _repeat_for(nb, repeat))
    ]
    show_cells = progress if progress is not None else sys.stderr.isatty()
    runs: list[NotebookRun] = []
    for number, (notebook, name, extra) in enumerate(jobs, start=1):
        output = out_dir / name
        print(f"[{number}/{len(jobs)}] {notebook.name} -> {output}", flush=True)
        started = time.monotonic()
        try:
            with _headless_kernels():
                papermill.execute_notebook(
                    str(notebook),
                    str(output),
                    parameters={
                        "profile": str(profile_path),
                        "overrides": dict(overrides or {}),
                        **extra,
                    },
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


def _repeat_for(
    notebook: Path, repeat: dict[str, dict[str, list[Any]]] | None
) -> dict[str, list[Any]] | None:
    for prefix, values in (repeat or {}).items():
        if notebook.name.startswith(prefix):
            return values
    return None


@contextmanager
def _headless_kernels() -> Iterator[None]:
    """Kernels started here inherit MLIMAGES_HEADLESS=1: their progress bars are text, off
    unless asked (mlimages.core.progress); nobody watches a widget under papermill."""
    previous = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = previous


def _write_summary(run_dir: Path, profile_path: Path, runs: list[NotebookRun]) -> None:
    write_json_atomic(
        run_dir / "study.json",
        {"profile": str(profile_path), "notebooks": [asdict(r) for r in runs]},
    )
