"""The papermill study runner and the notebook parameter checks, on throwaway notebooks."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from mlimages.study.runner import StudyError, run_study, study_notebooks

SETUP = """from mlimages.study import notebook
params = notebook.stage_params("explore", profile, overrides)
print(params.profile, params.synth.num_train)"""


def _notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('profile = "default"\noverrides = {}')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def test_runs_notebooks_in_order_with_the_profile(tmp_path: Path, runs: Path) -> None:
    _notebook(tmp_path / "02_second.ipynb", SETUP)
    _notebook(tmp_path / "01_first.ipynb", SETUP)
    (tmp_path / "notes.ipynb").write_text("not a study notebook")
    result = run_study("smoke", {"synth.num_train": 77}, notebooks_dir=tmp_path, progress=False)
    assert [r.notebook for r in result] == ["01_first.ipynb", "02_second.ipynb"]
    executed = nbformat.read(runs / "smoke" / "notebooks" / "01_first.ipynb", as_version=4)
    assert "smoke 77" in executed.cells[-1].outputs[0]["text"]
    summary = json.loads((runs / "smoke" / "study.json").read_text())
    assert [n["status"] for n in summary["notebooks"]] == ["ok", "ok"]
    assert "num_train: 77" in (runs / "smoke" / "params.yaml").read_text()


def test_stops_at_the_first_failure_naming_notebook_and_cell(tmp_path: Path, runs: Path) -> None:
    _notebook(tmp_path / "01_ok.ipynb", SETUP)
    _notebook(tmp_path / "02_broken.ipynb", SETUP, "x = 1", "raise ValueError('boom')")
    _notebook(tmp_path / "03_never.ipynb", SETUP)
    with pytest.raises(StudyError, match=r"02_broken.ipynb: cell \d+ .*ValueError: boom"):
        run_study("smoke", notebooks_dir=tmp_path, progress=False)
    summary = json.loads((runs / "smoke" / "study.json").read_text())
    assert [n["notebook"] for n in summary["notebooks"]] == ["01_ok.ipynb", "02_broken.ipynb"]
    assert summary["notebooks"][-1]["status"] == "failed"


def test_bad_overrides_are_refused_before_any_kernel_starts(tmp_path: Path, runs: Path) -> None:
    _notebook(tmp_path / "01_first.ipynb", SETUP)
    with pytest.raises(ValueError, match="'synth.num_trian': unknown key"):
        run_study("smoke", {"synth.num_trian": 1}, notebooks_dir=tmp_path)
    assert not (runs / "smoke" / "notebooks").exists()


def test_a_mistyped_papermill_parameter_is_refused(tmp_path: Path, runs: Path) -> None:
    """Papermill only warns about `-p profle smoke`; the notebook itself must refuse it."""
    nb = _notebook(tmp_path / "01_first.ipynb", SETUP)
    with pytest.raises(PapermillExecutionError, match="notebook parameter 'profle' is not taken"):
        papermill.execute_notebook(
            str(nb), str(tmp_path / "out.ipynb"), parameters={"profle": "smoke"}, progress_bar=False
        )
    papermill.execute_notebook(
        str(nb), str(tmp_path / "out.ipynb"), parameters={"profile": "smoke"}, progress_bar=False
    )
    assert "smoke" in nbformat.read(tmp_path / "out.ipynb", 4).cells[-1].outputs[0]["text"]


def test_repository_notebooks_are_found_in_order() -> None:
    names = [nb.name for nb in study_notebooks(Path(__file__).parent.parent / "notebooks")]
    assert names[0] == "01_data_exploration.ipynb" and names == sorted(names)
    with pytest.raises(StudyError, match="no notebooks"):
        study_notebooks(Path(__file__).parent, only=["99"])


def test_a_repeated_notebook_runs_once_per_value_into_its_own_copy(
    tmp_path: Path, runs: Path
) -> None:
    """Notebook 05 runs once per checkpoint: `metadata.mlimages.repeat` names the values."""
    nb = nbformat.read(_notebook(tmp_path / "05_repeat.ipynb", 'print("ckpt", ckpt)'), 4)
    nb.cells[0].source += "\nckpt = None"
    nb.metadata["mlimages"] = {"repeat": {"ckpt": [1, 2]}}
    nbformat.write(nb, tmp_path / "05_repeat.ipynb")
    _notebook(tmp_path / "06_after.ipynb", SETUP)
    result = run_study("smoke", notebooks_dir=tmp_path, progress=False)
    names = [Path(r.output).name for r in result]
    assert names == ["05_repeat-ckpt1.ipynb", "05_repeat-ckpt2.ipynb", "06_after.ipynb"]
    for ckpt in (1, 2):
        executed = nbformat.read(runs / "smoke" / "notebooks" / f"05_repeat-ckpt{ckpt}.ipynb", 4)
        assert executed.cells[-1].outputs[0]["text"] == f"ckpt {ckpt}\n"
    assert not (runs / "smoke" / "notebooks" / "05_repeat.ipynb").exists()


def test_executed_notebooks_open_clean(tmp_path: Path) -> None:
    """Notebooks 01-02 of the smoke study: no warning under any cell (tqdm's "IProgress not
    found" was one), and notebook 02's download bars (progress = True) are text on stdout."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MLIMAGES_RUNS": str(tmp_path / "runs")}
    env.pop("MLIMAGES_HEADLESS", None)  # `mlimages study` sets it for its kernels itself
    mlimages = Path(sys.executable).parent / "mlimages"
    done = subprocess.run(
        [str(mlimages), "study", "--params", "smoke", "--only", "01", "02"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    executed = sorted((tmp_path / "runs" / "smoke" / "notebooks").glob("*.ipynb"))
    assert [p.name[:2] for p in executed] == ["01", "02"]
    stdout = ""
    for path in executed:
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for output in cell.get("outputs", []):
                if output["output_type"] != "stream":
                    continue
                assert not (output["name"] == "stderr" and "Warning" in output["text"]), (
                    f"{path.name}, cell {index}: {output['text'][:300]}"
                )
                stdout += output["text"] if output["name"] == "stdout" else ""
    assert "train: 100%" in stdout, "the download's progress bar, as text"


def test_repeat_replaces_a_notebooks_values_and_refuses_unknown_names(tmp_path: Path) -> None:
    """A sweep runs notebook 05 for the checkpoints it needs only."""
    from mlimages.study.runner import notebook_runs

    path = _notebook(tmp_path / "05_repeat.ipynb", "pass")
    nb = nbformat.read(path, 4)
    nb.metadata["mlimages"] = {"repeat": {"ckpt": [1, 2, 3]}}
    nbformat.write(nb, path)
    assert [extra for _, extra in notebook_runs(path, {"ckpt": [2]})] == [{"ckpt": 2}]
    assert len(notebook_runs(path)) == 3
    with pytest.raises(StudyError, match=r"repeat \['seed'\] not among"):
        notebook_runs(path, {"seed": [0]})


def test_notebooks_on_request_run_only_when_named(tmp_path: Path) -> None:
    """The experiments notebook is not part of the study unless `only` names it."""
    _notebook(tmp_path / "01_first.ipynb", "pass")
    path = _notebook(tmp_path / "08_later.ipynb", "pass")
    nb = nbformat.read(path, 4)
    nb.metadata["mlimages"] = {"on_request": True}
    nbformat.write(nb, path)
    assert [p.name for p in study_notebooks(tmp_path)] == ["01_first.ipynb"]
    assert [p.name for p in study_notebooks(tmp_path, only=["08"])] == ["08_later.ipynb"]
    repository = Path(__file__).parent.parent / "notebooks"
    assert "08_experiments.ipynb" not in [p.name for p in study_notebooks(repository)]
