"""Sweeps: the grid, point folders, and which upstream stages a point links or makes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlimages.config.params import ParamsError, load_params
from mlimages.study import sweep


def test_grid_values_are_yaml_and_points_are_every_combination() -> None:
    grid = sweep.parse_grid(["finetune.lr=0.1,0.05", "finetune.decay_at=[0.5],[0.5,0.75]"])
    assert grid == {"finetune.lr": [0.1, 0.05], "finetune.decay_at": [[0.5], [0.5, 0.75]]}
    points = sweep.grid_points(grid)
    assert len(points) == 4
    assert points[1] == {"finetune.lr": 0.1, "finetune.decay_at": [0.5, 0.75]}
    assert sweep.point_name(points[1]) == "finetune.lr-0.1__finetune.decay_at-_0.5__0.75_"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["finetune.lr"], "expected KEY=V1,V2"),
        (["finetune.lr=0.1", "finetune.lr=0.2"], "given twice"),
        (["run_name=x"], "the sweep sets it"),
        (["finetune.lr=[0.1"], "not valid YAML"),
    ],
)
def test_malformed_grids_are_refused(items: list[str], message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        sweep.parse_grid(items)


def test_a_point_runs_in_its_own_folder_under_the_base_run(runs: Path) -> None:
    base = load_params("smoke")
    point = sweep.point_params("smoke", {"finetune.lr": 0.05}, base, "lr", "finetune.lr-0.05")
    assert point.run_dir == runs / "smoke" / "sweeps" / "lr" / "finetune.lr-0.05"
    assert point.finetune.lr == 0.05


def test_stage_inputs_resolve_seeds_and_grow_with_the_stage() -> None:
    base = load_params("smoke")
    pinned = load_params("smoke", {"seed": 3, "subset.seed": 0, "records.seed": 0})
    for stage in ("data", "download", "records"):
        assert sweep.stage_inputs(pinned, stage) == sweep.stage_inputs(base, stage)
    reseeded = load_params("smoke", {"seed": 3})
    assert sweep.stage_inputs(reseeded, "data") == sweep.stage_inputs(base, "data")
    assert sweep.stage_inputs(reseeded, "download") != sweep.stage_inputs(base, "download")
    assert set(sweep.stage_inputs(base, "records")) > set(sweep.stage_inputs(base, "download"))


def _finished_upstream(params, stages: tuple[str, ...] = ("explore", "download", "records")):
    """Stage folders as the notebooks leave them: params.yaml and metrics.json."""
    for stage in stages:
        folder = params.stage_dir(stage)
        params.write(folder / "params.yaml")
        (folder / "metrics.json").write_text("{}")
    (params.run_dir / "data" / "mini").mkdir(parents=True, exist_ok=True)


def test_upstream_stages_made_from_the_same_inputs_are_linked(runs: Path) -> None:
    base = load_params("smoke")
    _finished_upstream(base)
    point = sweep.point_params("smoke", {"finetune.lr": 0.05}, base, "lr", "p")
    linked, to_run = sweep.link_upstream(point, [base.run_dir])
    assert set(linked) == {"data", "explore", "download", "records"}
    assert (point.run_dir / "records").is_symlink()
    assert Path(os.path.realpath(point.run_dir / "records")) == base.run_dir / "records"
    assert to_run == ["04"]  # no finished pretraining to share: the point makes its own


def test_a_changed_stage_and_everything_after_it_run_in_the_point(runs: Path) -> None:
    base = load_params("smoke")
    _finished_upstream(base)
    point = sweep.point_params("smoke", {"records.shard_mb": 1.0}, base, "shards", "p")
    linked, to_run = sweep.link_upstream(point, [base.run_dir])
    assert set(linked) == {"data", "explore", "download"}
    assert to_run == ["03", "04"]
    # A rerun after the base's records changed the same way: now they are shared, the
    # point's own folder gives way to the link; and back again.
    (point.run_dir / "records").mkdir()
    _finished_upstream(point, ("records",))
    other = sweep.point_params("smoke", {"records.shard_mb": 1.0}, base, "shards", "q")
    linked, to_run = sweep.link_upstream(other, [base.run_dir, point.run_dir])
    assert linked["records"] == str(point.run_dir / "records") and to_run == ["04"]
    synth = sweep.point_params("smoke", {"synth.num_train": 300}, base, "shards", "q")
    linked, to_run = sweep.link_upstream(synth, [base.run_dir, point.run_dir])
    assert linked == {} and to_run == ["01", "02", "03", "04"]
    assert not (synth.run_dir / "records").exists()


def test_bad_point_names_and_parameters_stop_before_any_notebook(runs: Path) -> None:
    with pytest.raises(ParamsError, match="sweep point 'a b'"):
        sweep.run_points("smoke", {"a b": {}}, "s", ["05"])
    with pytest.raises(ParamsError, match="finetune.lrr"):
        sweep.run_points("smoke", {"p": {"finetune.lrr": 0.1}}, "s", ["05"])
    assert not (runs / "smoke" / "sweeps" / "s").exists()


def test_the_table_has_a_row_per_point_checkpoint_seed_and_size(tmp_path: Path) -> None:
    rows = "ckpt,setting,seed,model,img_size,top1,top5,train_top1,param_count,train_sizes,steps\n"
    a = tmp_path / "a" / "finetune" / "ckpt2"
    a.mkdir(parents=True)
    (a / "results.csv").write_text(
        rows + "2,s,0,m,24,50.0,100.0,60.0,0.1,24,4\n2,s,0,m,32,40,90,50,0.1,24,4\n"
    )
    runs = [
        sweep.PointRun("lr-0.1", {"finetune.lr": 0.1}, tmp_path / "a"),
        sweep.PointRun("lr-0.2", {"finetune.decay_at": [0.5], "seed": 1}, tmp_path / "b"),
    ]
    table = sweep.results_table(runs)
    assert list(table.columns[:4]) == ["point", "finetune.lr", "finetune.decay_at", "point_seed"]
    assert len(table) == 3 and table["top1"].iloc[0] == 50.0
    assert table["top1"].isna().iloc[2] and table["finetune.decay_at"].iloc[2] == json.dumps([0.5])
