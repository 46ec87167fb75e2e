"""Strict JSON: no NaN or Infinity in any `--json` output or in a `.json` file the package
writes (RFC 8259 has neither; `jq`, browsers and most languages' parsers refuse them)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlimages import cli
from mlimages.core.atomic import dumps_json, finite_or_none, write_json_atomic
from mlimages.report import training
from mlimages.train import finetune

ONE_SEED = {"finetune.seeds": [0], "finetune.eval_every": 0, "finetune.steps": 2}


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def strict_loads(text: str, where: str = "output") -> Any:
    """`json.loads` that refuses NaN, Infinity and -Infinity, naming where they were."""
    try:
        return json.loads(text, parse_constant=_refuse)
    except ValueError as exc:
        raise AssertionError(f"{where}: not strict JSON ({exc})") from None


def _verb(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert cli.main([*argv, "--json"]) == 0, capsys.readouterr().err
    return strict_loads(capsys.readouterr().out, f"mlimages {' '.join(argv)} --json")


def _sets(overrides: dict[str, Any]) -> list[str]:
    return [f"--set={key}={json.dumps(value)}" for key, value in overrides.items()]


# --- the sanitiser ---------------------------------------------------------------------------


def test_strict_parser_refuses_what_json_dumps_writes_by_default() -> None:
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(AssertionError, match=constant):
            strict_loads(f'{{"x": {constant}}}')
    assert strict_loads('{"x": null, "y": "NaN"}') == {"x": None, "y": "NaN"}


def test_non_finite_floats_become_null_recursively() -> None:
    payload = {
        "nan": math.nan,
        "inf": [math.inf, (-math.inf, 1.5)],
        "nested": {"numpy": [np.float32("nan"), np.float64(np.inf), np.float32(0.25)]},
        "kept": [0, -3, True, False, None, "NaN", "Infinity", 2.0],
        "int64": np.int64(3),
    }
    assert finite_or_none(payload) == {
        "nan": None,
        "inf": [None, [None, 1.5]],
        "nested": {"numpy": [None, None, 0.25]},
        "kept": [0, -3, True, False, None, "NaN", "Infinity", 2.0],
        "int64": 3.0,  # numpy scalars as float, as `default=float` always wrote them
    }
    assert strict_loads(dumps_json(payload, indent=2))["nan"] is None
    assert payload["nan"] != payload["nan"], "the caller's payload is not changed"


def test_unknown_objects_are_still_refused() -> None:
    with pytest.raises(TypeError):
        dumps_json({"path": Path("x"), "ok": 1.0})
    with pytest.raises(TypeError):
        dumps_json({"array": np.zeros(3)})


def test_written_json_files_hold_null(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "m.json", {"std": math.nan, "n": 1})
    assert strict_loads(path.read_text(), str(path)) == {"std": None, "n": 1}


def test_spread_over_one_seed_says_why_its_std_is_null() -> None:
    rows = [{"img_size": 24, "top1": 40.0, "top5": 90.0}]
    one = finetune._spread(rows, 24)
    assert one["top1_mean"] == 40.0 and one["top1_std"] is None and one["top5_std"] is None
    assert "1 seed" in one["std_note"]
    two = finetune._spread([*rows, {"img_size": 24, "top1": 42.0, "top5": 92.0}], 24)
    assert two["top1_std"] == pytest.approx(math.sqrt(2)) and "std_note" not in two
    none = finetune._spread(rows, 32)
    assert none["n"] == 0 and none["top1_mean"] is None
    assert training._pm(40.0, None) == "40.0" and training._pm(40.0, 1.41) == "40.0 ± 1.4"
    assert training._pm(None, None) == "–" and training._pm(40.0, math.nan) == "40.0"


# --- every verb with --json that is cheap on the smoke profile -------------------------------


def test_statistics_verbs(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dictionary = str(shared / "dictionary_and_semantic_hierarchy.txt")
    urls = str(shared / "train_urls_tiny.txt")
    assert _verb(capsys, "taxonomy", "stats", dictionary)["classes"] == 11_166
    assert _verb(capsys, "annotations", "stats", urls)["images"] == 100
    closed = _verb(capsys, "annotations", "stats", urls, "--close", "--dictionary", dictionary)
    assert closed["images"] == 100
    assert _verb(capsys, "params", "show", "--params", "smoke")["profile"] == "smoke"


def test_plan_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    assert isinstance(_verb(capsys, "plan", "--params", "smoke"), dict)
    assert isinstance(_verb(capsys, "plan", "--paper"), dict)
    _verb(capsys, "plan", "--images", "1000", "--epochs", "2", "--price", "2.5")


def test_metrics_verb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((6, 4), np.float32)
    labels[[0, 1, 2], [0, 1, 1]] = 1  # classes 2 and 3 never positive
    np.save(tmp_path / "scores.npy", rng.random((6, 4)).astype(np.float32))
    np.save(tmp_path / "labels.npy", labels)
    argv = ["--scores", str(tmp_path / "scores.npy"), "--labels", str(tmp_path / "labels.npy")]
    assert _verb(capsys, "metrics", *argv, "--k", "3")["classes_with_positives"] == 2


def test_records_inspect_on_the_authors_shard(
    shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _verb(capsys, "records", "inspect", str(shared / "tfrecords" / "0.tfrecords"))
    assert rows and all("labels" in row for row in rows)


def test_synth_verb(tmp_path: Path, runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _verb(capsys, "synth", "--params", "smoke", "--out", str(tmp_path / "mini"))
    assert out["out"] == str(tmp_path / "mini")
    for path in (tmp_path / "mini").rglob("*.json"):
        strict_loads(path.read_text(), str(path))


def test_stage_verbs_and_their_files(
    smoke_stages: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fine-tuning ckpt 1 on one seed (std undefined: null, with the reason beside it), the
    smoke records, and then every `.json` and `.jsonl` the stages wrote."""
    from mlimages.config.params import load_params

    metrics = _verb(capsys, "finetune", "--params", "smoke", "--ckpt", "1", *_sets(ONE_SEED))
    for size, spread in metrics["sizes"].items():
        assert spread["n"] == 1 and spread["top1_std"] is None, size
        assert "seed" in spread["std_note"]
    params = load_params("smoke", ONE_SEED)
    assert "–" not in training.paper_comparison(params, 1)["top-1 ours"].tolist()

    index = load_params("smoke").stage_dir("records")
    shard = next(index.rglob("*.tfrecord"))
    assert _verb(capsys, "records", "inspect", str(shard), "--limit", "2")
    assert _verb(capsys, "explore", "--params", "smoke")

    written = sorted(smoke_stages.rglob("*.json"))
    assert any(p.name == "metrics.json" for p in written) and any(
        p.name == "eval.json" for p in written
    )
    for path in written:
        strict_loads(path.read_text(), str(path))
    for path in smoke_stages.rglob("*.jsonl"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                strict_loads(line, f"{path}:{number}")
