"""The command line: `--json` output, clear errors, and no TensorFlow for statistics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlimages.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_taxonomy_stats_json(shared: Path, capsys) -> None:
    stats = _json(
        capsys, "taxonomy", "stats", str(shared / "dictionary_and_semantic_hierarchy.txt"), "--json"
    )
    assert stats == {
        "classes": 11166,
        "roots": 4,
        "leaves": stats["leaves"],
        "max_depth": 16,
        "mean_depth": pytest.approx(7.471, abs=1e-3),
    }
    assert 0 < stats["leaves"] < 11166


def test_annotations_stats_json_with_closure(shared: Path, capsys) -> None:
    listed = _json(capsys, "annotations", "stats", str(shared / "train_urls_tiny.txt"), "--json")
    closed = _json(
        capsys,
        "annotations",
        "stats",
        str(shared / "train_urls_tiny.txt"),
        "--close",
        "--dictionary",
        str(shared / "dictionary_and_semantic_hierarchy.txt"),
        "--json",
    )
    assert listed["images"] == closed["images"] == 100
    assert closed["labels_per_image_mean"] >= listed["labels_per_image_mean"]
    assert closed["classes_used"] >= listed["classes_used"]


def test_bad_label_list_is_a_clear_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "list.txt"
    bad.write_text("a.jpg\t1:1\nb.jpg\t99999:1\n")
    assert main(["annotations", "stats", str(bad), "--num-classes", "100"]) == 2
    err = capsys.readouterr().err
    assert "list.txt:2" in err and "99999" in err


def test_params_show_refuses_unknown_keys(capsys) -> None:
    resolved = _json(
        capsys, "params", "show", "--params", "smoke", "--set", "synth.seed=5", "--json"
    )
    assert resolved["synth"]["seed"] == 5
    assert main(["params", "show", "--set", "synth.sed=5"]) == 2
    assert "'synth.sed': unknown key" in capsys.readouterr().err


def test_synth_and_explore_verbs(tmp_path: Path, runs: Path, capsys) -> None:
    out = _json(capsys, "synth", "--params", "smoke", "--out", str(tmp_path / "mini"), "--json")
    assert out["train"] == 400 and (tmp_path / "mini" / "train_urls.txt").is_file()
    assert {"classes", "leaves", "max_depth", "leaf_batch_presence"} <= set(out)
    metrics = _json(capsys, "explore", "--params", "smoke", "--json")
    assert metrics["labels"]["images"] == 400
    assert (runs / "smoke" / "explore" / "params.yaml").is_file()


def test_statistics_verbs_do_not_import_tensorflow(shared: Path) -> None:
    dictionary = str(shared / "dictionary_and_semantic_hierarchy.txt")
    code = (
        "import sys; from mlimages.cli import main; "
        f"main(['taxonomy', 'stats', {dictionary!r}, '--json']); "
        f"main(['annotations', 'stats', {str(shared / 'train_urls_tiny.txt')!r}, '--json']); "
        "heavy = [m for m in ('tensorflow', 'matplotlib', 'pandas') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)


def test_python_dash_m_and_console_script_agree(shared: Path) -> None:
    args = ["taxonomy", "stats", str(shared / "dictionary_and_semantic_hierarchy.txt"), "--json"]
    via_module = subprocess.run(
        [sys.executable, "-m", "mlimages", *args], check=True, capture_output=True
    )
    script = Path(sys.executable).parent / "mlimages"
    via_script = subprocess.run([str(script), *args], check=True, capture_output=True)
    assert json.loads(via_module.stdout) == json.loads(via_script.stdout)
