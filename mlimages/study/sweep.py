"""Sweeps: the study's notebooks at every point of a grid, each stage reused where it can be.

A point is the profile with a few dotted overrides; its run folder is
`<runs>/<profile>/sweeps/<sweep>/<point>/` (`Params.run_name`). Before its notebooks run,
each upstream stage (the miniature and its exploration, the download, the records, the
pretraining) is linked from the base run or an earlier point when that folder was made from
the same inputs (its saved `params.yaml`, or for pretraining its `fingerprint.json` and step
count); the first stage that cannot be linked, and every one after it, runs in the point's
own folder, through the study runner (papermill), where the stage fingerprints keep or redo
what a previous sweep left. The table gathers every point's fine-tuning results: a row per
point, checkpoint, seed and evaluation size.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mlimages.config import fingerprint, layout
from mlimages.config.params import Params, ParamsError, load_params
from mlimages.core.atomic import write_json_atomic, write_text_atomic

SWEEPS = "sweeps"  # folder of the base run that holds the sweeps
RESERVED = ("profile", "runs_dir", "run_name")  # what the sweep itself decides
# Upstream stages in the study's order: the folders a stage leaves, the notebook that makes
# them and the folder whose params.yaml says what made them.
UPSTREAM: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (layout.DATA, (layout.DATA, layout.EXPLORE), "01"),
    (layout.DOWNLOAD, (layout.DOWNLOAD,), "02"),
    (layout.RECORDS, (layout.RECORDS,), "03"),
    (layout.PRETRAIN, (layout.PRETRAIN,), "04"),
)
NAME = r"[A-Za-z0-9._-]+"  # sweep and point folder names
TABLE_COLUMNS = ("point", "ckpt", "seed", "img_size", "top1", "top5", "train_top1")


@dataclass
class PointRun:
    """One point: its name, overrides, run folder, what it linked and which notebooks ran."""

    name: str
    overrides: dict[str, Any]
    run_dir: Path
    linked: dict[str, str] = field(default_factory=dict)
    notebooks: list[str] = field(default_factory=list)


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`KEY=V1,V2` items as {key: [values]}; values read as YAML (`[0.5],[0.5,0.75]` is two
    lists). A key given twice, or none, or a reserved one is refused."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ParamsError(
                f"--grid {item!r}; expected KEY=V1,V2,... (e.g. finetune.lr=0.1,0.01)"
            )
        if key in grid:
            raise ParamsError(f"--grid {key!r} given twice; expected each key once")
        if key in RESERVED:
            raise ParamsError(f"--grid {key!r}: the sweep sets it; expected a stage parameter")
        try:
            values = yaml.safe_load(f"[{text}]")
        except yaml.YAMLError as exc:
            raise ParamsError(f"--grid {item!r}: values are not valid YAML ({exc})") from None
        grid[key] = values
    return grid


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last key varying fastest."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def point_name(values: dict[str, Any]) -> str:
    """A folder name for a point, `finetune.lr-0.01__seed-1`: letters, digits and `._-` only
    (the miniature's images are file:// URLs below the run folder)."""
    text = "__".join(f"{key}-{json.dumps(value)}" for key, value in values.items()) or "base"
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def sweep_dir(base: Params, sweep: str) -> Path:
    return base.run_dir / SWEEPS / sweep


def point_params(profile: str, overrides: dict[str, Any], base: Params, sweep: str, name: str):
    """The point's resolved parameters, its run folder under the base run's sweeps."""
    run_name = str(Path(base.run_name or base.profile) / SWEEPS / sweep / name)
    return load_params(profile, {**overrides, "run_name": run_name})


# --- what an upstream stage depends on ----------------------------------------------------


def stage_inputs(params: Params, stage: str) -> dict[str, Any]:
    """The resolved sections that decide an upstream stage's folder, cumulative (a stage
    depends on everything before it); seeds resolved (None means the profile's seed)."""
    inputs: dict[str, Any] = {
        "synth": params.synth.model_dump(mode="json"),
        "data": {
            key: (str(params.resolve_path(v)) if v and "://" not in str(v) else v)
            for key, v in params.data.model_dump(mode="json").items()
        },
    }
    if stage == layout.DATA:
        return inputs
    subset = params.subset.model_dump(mode="json")
    subset["seed"] = params.subset_seed
    inputs["subset"] = subset
    inputs["download"] = params.download.model_dump(mode="json", exclude={"progress", "workers"})
    if stage == layout.DOWNLOAD:
        return inputs
    records = params.records.model_dump(mode="json", exclude={"progress", "workers"})
    records["seed"] = params.records_seed
    inputs["records"] = records
    if stage == layout.RECORDS:
        return inputs
    raise ValueError(f"stage {stage!r}: pretraining is compared by its fingerprint")


def _saved_params(folder: Path) -> Params | None:
    path = folder / layout.PARAMS_FILE
    if not path.is_file():
        return None
    try:
        return load_params(path)
    except ParamsError:  # a folder from an older version of the parameters
        return None


def reusable(candidate: Path, stage: str, params: Params) -> bool:
    """Whether `candidate` (a run folder) holds `stage` as `params` would make it."""
    if stage == layout.PRETRAIN:
        return _same_pretraining(candidate / layout.PRETRAIN, params)
    marker = candidate / (layout.EXPLORE if stage == layout.DATA else stage)
    saved = _saved_params(marker)
    if saved is None or not (marker / layout.METRICS_FILE).is_file():  # metrics.json: it finished
        return False
    return stage_inputs(saved, stage) == stage_inputs(params, stage)


def _same_pretraining(folder: Path, params: Params) -> bool:
    """A finished pretraining of exactly these values and steps (its fingerprint.json)."""
    from mlimages.train import pretrain

    recorded, metrics = folder / fingerprint.FILE, folder / layout.METRICS_FILE
    if not (recorded.is_file() and metrics.is_file() and (folder / layout.MODEL_FILE).is_file()):
        return False
    if json.loads(metrics.read_text()).get("steps") != params.pretrain.steps:
        return False
    try:
        values = pretrain.run_values(params)
    except (FileNotFoundError, ValueError):  # the point's records are not there (not linked)
        return False
    return not fingerprint.changed_keys(json.loads(recorded.read_text()), values)


def link_upstream(params: Params, candidates: list[Path]) -> tuple[dict[str, str], list[str]]:
    """Link each upstream stage of `params`' run folder from the first candidate that holds
    it, in order, until one cannot be; returns {folder: target} and the notebooks (prefixes)
    that must then run, every later upstream stage's included."""
    run_dir = params.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    linked: dict[str, str] = {}
    to_run: list[str] = []
    for stage, folders, notebook in UPSTREAM:
        source = None
        if not to_run:
            source = next(
                (c for c in candidates if c != run_dir and reusable(c, stage, params)), None
            )
        for name in folders:
            own = run_dir / name
            if source is not None and (source / name).exists():
                target = Path(os.path.realpath(source / name))
                _replace_with_link(own, target)
                linked[name] = str(target)
            elif own.is_symlink():
                own.unlink()  # made elsewhere: this point makes its own from here on
        if source is None:
            to_run.append(notebook)
    return linked, to_run


def _replace_with_link(own: Path, target: Path) -> None:
    if own.is_symlink():
        if Path(os.path.realpath(own)) == target:
            return
        own.unlink()
    elif own.exists():
        shutil.rmtree(own)
    os.symlink(os.path.relpath(target, own.parent), own)


# --- running ----------------------------------------------------------------------------------


def run_points(
    profile: str,
    points: dict[str, dict[str, Any]],
    sweep: str,
    notebooks: list[str],
    base_overrides: dict[str, Any] | None = None,
    repeat: dict[str, dict[str, list[Any]]] | None = None,
    kernel_name: str | None = None,
) -> list[PointRun]:
    """Run every named point (name -> overrides on top of `base_overrides`): its upstream
    stages linked or made, then `notebooks` (prefixes of the later ones, e.g. ["05"]).
    Every point's parameters are checked before the first notebook starts."""
    from mlimages.study.runner import run_study

    if not re.fullmatch(NAME, sweep):
        raise ParamsError(f"sweep name {sweep!r}: expected letters, digits and ._-")
    base_overrides = dict(base_overrides or {})
    base = load_params(profile, base_overrides)
    for name in points:
        if not re.fullmatch(NAME, name):
            raise ParamsError(f"sweep point {name!r}: expected letters, digits and ._-")
    resolved = {
        name: point_params(profile, {**base_overrides, **values}, base, sweep, name)
        for name, values in points.items()
    }
    candidates = [base.run_dir]
    done: list[PointRun] = []
    for name, params in resolved.items():
        linked, upstream = link_upstream(params, candidates)
        later = [nb for nb in notebooks if nb not in {n for _, _, n in UPSTREAM}]
        run = PointRun(name, points[name], params.run_dir, linked, upstream + later)
        write_json_atomic(params.run_dir / "point.json", _point_record(run))
        print(f"sweep {sweep}: {name} (linked: {', '.join(linked) or 'nothing'})", flush=True)
        if run.notebooks:
            run_study(
                profile,
                {**base_overrides, **points[name], "run_name": params.run_name},
                only=run.notebooks,
                kernel_name=kernel_name,
                repeat=repeat,
            )
        candidates.append(params.run_dir)
        done.append(run)
    write_json_atomic(
        sweep_dir(base, sweep) / "sweep.json",
        {"profile": profile, "base_overrides": base_overrides, "notebooks": notebooks,
         "points": [_point_record(r) for r in done]},
    )  # fmt: skip
    return done


def _point_record(run: PointRun) -> dict[str, Any]:
    return {
        "name": run.name,
        "overrides": run.overrides,
        "run_dir": str(run.run_dir),
        "linked": run.linked,
        "notebooks": run.notebooks,
    }


def results_table(runs: list[PointRun]) -> pd.DataFrame:
    """A row per point, checkpoint, seed and evaluation size: the point's values as columns
    (one per overridden key; `point_seed` for the profile's seed, which the fine-tuning's
    `seed` column would shadow), then the fine-tuning figures (`finetune/ckpt*/results.csv`)."""
    keys = list(dict.fromkeys(key for run in runs for key in run.overrides))
    frames = []
    for run in runs:
        paths = sorted((run.run_dir / layout.FINETUNE).glob(layout.RESULTS_FILES))
        found = pd.concat([pd.read_csv(p) for p in paths]) if paths else pd.DataFrame()
        if found.empty:
            found = pd.DataFrame([{c: None for c in TABLE_COLUMNS[1:]}])
        found = found.reindex(columns=list(TABLE_COLUMNS[1:]))
        for key in reversed(keys):
            value = run.overrides.get(key)
            column = f"point_{key}" if key in TABLE_COLUMNS else key  # e.g. the profile's seed
            found.insert(0, column, json.dumps(value) if isinstance(value, list | dict) else value)
        found.insert(0, "point", run.name)
        frames.append(found)
    return pd.concat(frames, ignore_index=True)


def run_sweep(
    profile: str,
    grid: dict[str, list[Any]],
    notebooks: list[str],
    base_overrides: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
    ckpts: list[int] | None = None,
    name: str | None = None,
    kernel_name: str | None = None,
) -> tuple[pd.DataFrame, Path]:
    """`mlimages sweep`: every grid point (fine-tuning `seeds` and checkpoints `ckpts` of
    notebook 05 when given), then the tidy table, saved as `results.csv` beside sweep.json."""
    if not grid:
        raise ParamsError("a sweep needs at least one --grid KEY=V1,V2")
    extra: dict[str, Any] = {"finetune.seeds": list(seeds)} if seeds else {}
    points = {point_name(values): {**values, **extra} for values in grid_points(grid)}
    sweep = name or "__".join(grid)
    repeat = {"05": {"ckpt": list(ckpts)}} if ckpts else None
    runs = run_points(profile, points, sweep, notebooks, base_overrides, repeat, kernel_name)
    table = results_table(runs)
    out = sweep_dir(load_params(profile, base_overrides), sweep) / "results.csv"
    write_text_atomic(out, table.to_csv(index=False))
    return table, out
