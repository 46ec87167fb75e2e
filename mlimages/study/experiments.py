"""Experiments beyond the paper (notebook 08, `make experiments`): the loss ablation, the
data-efficiency curve and the novel classes.

Each is a sweep of the study's own notebooks (mlimages.study.sweep) over the profile's
`experiments` section, gathered into a tidy table (a row per setting and seed), and read
through paired 95% intervals over seeds (mlimages.core.stats), as the paper's claims are. The
paper isolates neither its loss nor the size of its target task; these tables do, on the
miniature.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlimages.config import fingerprint, layout
from mlimages.config.params import Params, load_params
from mlimages.core import stats
from mlimages.core.atomic import (
    write_json_atomic,
)
from mlimages.study import sweep

STAGE = layout.EXPERIMENTS
LOSS_METRICS = ("map", "f1_at_5", "map_head", "map_middle", "map_tail", "transfer_top1")
# The class-prior ranking's mAP on the same validation images: what the arms' mAP stands beside.
PRIOR_COLUMNS = ("prior_map", "prior_map_head", "prior_map_middle", "prior_map_tail")
LOSS_COLUMNS = ("loss", "seed", *LOSS_METRICS, *PRIOR_COLUMNS)
EFFICIENCY_COLUMNS = ("ckpt", "k", "seed", "top1", "top5")
NOVEL_COLUMNS = ("ckpt", "seed", "top1", "top5")
THIRDS = ("head", "middle", "tail")
BASELINE_LOSS = "paper"  # the arm every other loss is compared with
FROM_SCRATCH = 1  # the checkpoint every transfer gain is measured against
# ImageNet-1k's training set: 1,281,167 images of 1,000 classes, where the paper's +1.0 lies.
PAPER_K = 1281
PAPER_COMPARISON = (2, 1, 224)  # its ckpt 2 - ckpt 1 at 224 px


def _pins(params: Params) -> dict[str, Any]:
    """A point that changes `seed` changes the pretraining's seed only: the subset and the
    record order keep the profile's, so every point shares its data."""
    return {
        "subset.seed": params.subset_seed,
        "records.seed": params.records_seed,
    }


def _base_rows(run_dir: Path, ckpt: int, size: int) -> pd.DataFrame:
    """One checkpoint's fine-tuning results (`results.csv`) at one evaluation size."""
    path = run_dir / layout.FINETUNE / layout.ckpt_folder(ckpt) / layout.RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no fine-tuning results; the sweep did not run ckpt {ckpt}"
        )
    rows = pd.read_csv(path)
    return rows[rows["img_size"] == size]


# --- the loss ablation --------------------------------------------------------------------


def loss_points(params: Params) -> dict[str, dict[str, Any]]:
    """`<loss>-seed<s>`: the arm's overrides, pretraining seed s, the transfer fine-tuned
    with seed s (paired across arms)."""
    e = params.experiments
    return {
        f"{arm.name}-seed{seed}": {
            **e.loss_overrides, **arm.overrides, **_pins(params),
            "seed": seed, "finetune.seeds": [seed],
        }
        for arm in e.losses
        for seed in e.loss_seeds
    }  # fmt: skip


def frequency_thirds(params: Params) -> dict[str, np.ndarray]:
    """Classes with images in both the training and the validation records, ranked by their
    training images and cut in three: head (most frequent), middle, tail."""
    from mlimages.input import records

    train = np.asarray(records.split_index(params.run_dir, "train").images_per_class)
    val = np.asarray(records.split_index(params.run_dir, "val").images_per_class)
    eligible = np.flatnonzero((train > 0) & (val > 0))
    ranked = eligible[np.argsort(-train[eligible], kind="stable")]
    return dict(zip(THIRDS, np.array_split(ranked, 3), strict=True))


def pretrain_quality(point: Params, thirds: dict[str, np.ndarray]) -> dict[str, float]:
    """mAP, F1@5 and the mAP of each frequency third (percent) of a point's pretrained model
    on the validation records; kept in the point's folder for the model it was computed on."""
    from mlimages.evaluate import multilabel
    from mlimages.input import records

    model_path = point.run_dir / layout.PRETRAIN / layout.MODEL_FILE
    folder = point.run_dir / STAGE / "pretrain_eval"
    saved = folder / "quality.json"
    made_from = {"model": fingerprint.file_digest(model_path), "thirds": _thirds_key(thirds)}
    if saved.is_file():
        found = json.loads(saved.read_text())
        if found.get("made_from") == made_from:
            return found["quality"]
    import keras

    size = point.evaluate.image_size or point.pretrain.image_size
    val = records.split_index(point.run_dir, "val")
    found = multilabel.evaluate_multilabel(
        keras.models.load_model(model_path), val, size, folder,
        max_k=5, threshold=point.evaluate.threshold, batch=point.evaluate.batch,
        crop_fraction=point.pipeline.eval_crop_fraction, progress=False,
    )  # fmt: skip
    quality = {"map": _pct(found.map), "f1_at_5": _pct(found.instance[5]["f1"])}
    for name, classes in thirds.items():
        quality[f"map_{name}"] = _pct(np.nanmean(found.average_precision[classes]))
    write_json_atomic(saved, {"made_from": made_from, "quality": quality})
    return quality


def prior_quality(params: Params, labels: Path, thirds: dict[str, np.ndarray]) -> dict[str, float]:
    """The class-prior ranking's mAP (every image ranks the classes by their share of the
    training images) overall and by frequency third, on the validation targets in `labels`:
    what a model that ignores the image gets."""
    from mlimages.evaluate import multilabel
    from mlimages.input import records

    prior = multilabel.class_prior(records.split_index(params.run_dir, "train"))
    found = multilabel.prior_multilabel(prior, labels, (1,), progress=False)
    quality = {"prior_map": _pct(found.map)}
    for name, classes in thirds.items():
        quality[f"prior_map_{name}"] = _pct(np.nanmean(found.average_precision[classes]))
    return quality


def _thirds_key(thirds: dict[str, np.ndarray]) -> str:
    return fingerprint.digest({name: classes.tolist() for name, classes in thirds.items()})


def _pct(value: float) -> float:
    return round(100 * float(value), 3)


def run_loss_ablation(profile: str, overrides: dict[str, Any] | None = None) -> pd.DataFrame:
    """Pretrain every arm with every seed, measure it, fine-tune the transfer checkpoint."""
    params = load_params(profile, overrides)
    e = params.experiments
    points = loss_points(params)
    runs = sweep.run_points(
        profile, points, "loss_ablation", ["05"], overrides, {"05": {"ckpt": [e.transfer_ckpt]}}
    )
    thirds = frequency_thirds(params)
    arms = [(arm.name, seed) for arm in e.losses for seed in e.loss_seeds]
    rows = []
    for (name, seed), run in zip(arms, runs, strict=True):
        point = load_params(run.run_dir / layout.PARAMS_FILE)
        top1 = _base_rows(run.run_dir, e.transfer_ckpt, params.finetune.base_size)
        rows.append(
            {
                "loss": name,
                "seed": seed,
                **pretrain_quality(point, thirds),
                "transfer_top1": float(top1.loc[top1["seed"] == seed, "top1"].iloc[0]),
            }
        )
    # Every arm was scored on the same validation records (targets saved by pretrain_quality):
    # one class prior beside all of them.
    labels = runs[0].run_dir / STAGE / "pretrain_eval" / "labels.npy"
    prior = prior_quality(params, labels, thirds)
    return pd.DataFrame([{**row, **prior} for row in rows], columns=list(LOSS_COLUMNS))


def chance_top1(params: Params, task: str = "target") -> float:
    """Top-1 (%) of a uniform guess on a task's validation records."""
    from mlimages.input import records
    from mlimages.report.verdicts import chance

    return chance(1, records.split_index(params.run_dir, f"{task}_val").num_classes)


def baselines(params: Params, loss: pd.DataFrame) -> pd.DataFrame:
    """What every figure of the experiments stands beside: the class-prior ranking's mAP (the
    loss ablation's, overall and by third) and chance top-1 on the target and the novel task."""
    prior = loss[list(PRIOR_COLUMNS)].iloc[0] if len(loss) else pd.Series(dtype=float)
    parts = ("all classes", *(f"{third} third" for third in THIRDS))
    rows = [
        {"baseline": f"class-prior mAP, {part}", "value": _round(prior.get(column, np.nan))}
        for column, part in zip(PRIOR_COLUMNS, parts, strict=True)
    ]
    for task in ("target", "novel"):
        chance = _round(chance_top1(params, task))
        rows.append({"baseline": f"chance top-1, {task} task", "value": chance})
    return pd.DataFrame(rows, columns=["baseline", "value"])


def reading(low: float, high: float) -> str:
    """What an interval of a difference says: a side of zero, or neither."""
    if np.isnan(low) or np.isnan(high):
        return "too few seeds"
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return "no difference shown"


def references(params: Params) -> dict[str, str]:
    """Each arm's reference arm (`LossVariant.against`)."""
    return {arm.name: arm.against for arm in params.experiments.losses}


def loss_summary(table: pd.DataFrame, against: dict[str, str] | None = None) -> pd.DataFrame:
    """Every arm against its reference (`against`: arm -> arm, default the paper's loss),
    metric by metric: paired differences over seeds."""
    against = against or {}
    rows = []
    for arm in dict.fromkeys(table["loss"]):
        own = table[table["loss"] == arm].set_index("seed")
        reference = against.get(arm, BASELINE_LOSS)
        base = table[table["loss"] == reference].set_index("seed")
        for metric in LOSS_METRICS:
            mean = stats.mean_interval(own[metric].to_numpy())
            row = {"loss": arm, "against": reference, "metric": metric, "mean": round(mean.mean, 3)}
            if arm == reference:
                row.update(against=None, difference=None, low=None, high=None, reading="reference")
            else:
                d = stats.paired_interval(own[metric].to_dict(), base[metric].to_dict())
                row.update(
                    difference=round(d.mean, 3),
                    low=_round(d.low),
                    high=_round(d.high),
                    reading=reading(d.low, d.high),
                )
            rows.append(row)
    return pd.DataFrame(rows)


def _round(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 3)


# --- the data-efficiency curve ----------------------------------------------------------------


def efficiency_points(params: Params) -> dict[str, dict[str, Any]]:
    e = params.experiments
    return {
        f"k{k}": {"finetune.examples_per_class": k, "finetune.seeds": e.seeds} for k in e.k_values
    }


def run_data_efficiency(profile: str, overrides: dict[str, Any] | None = None) -> pd.DataFrame:
    """Checkpoints `k_ckpts` fine-tuned on K images a class, for every K, every seed."""
    params = load_params(profile, overrides)
    e = params.experiments
    runs = sweep.run_points(
        profile, efficiency_points(params), "data_efficiency", ["05"], overrides,
        {"05": {"ckpt": e.k_ckpts}},
    )  # fmt: skip
    rows = []
    for k, run in zip(e.k_values, runs, strict=True):
        for ckpt in e.k_ckpts:
            found = _base_rows(run.run_dir, ckpt, params.finetune.base_size)
            for seed, top1, top5 in zip(found["seed"], found["top1"], found["top5"], strict=True):
                rows.append({"ckpt": ckpt, "k": k, "seed": int(seed), "top1": top1, "top5": top5})
    return pd.DataFrame(rows, columns=list(EFFICIENCY_COLUMNS))


def gains(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Top-1 of every checkpoint and its paired gain over ckpt 1 (from scratch), for each
    value of `by` (K, or the task)."""
    rows = []
    for key in dict.fromkeys(table[by]):
        part = table[table[by] == key]
        scratch = part[part["ckpt"] == FROM_SCRATCH].set_index("seed")["top1"].to_dict()
        for ckpt in sorted(set(part["ckpt"])):
            own = part[part["ckpt"] == ckpt].set_index("seed")["top1"]
            row = {by: key, "ckpt": ckpt, "top1": round(float(own.mean()), 3)}
            if ckpt != FROM_SCRATCH:
                d = stats.paired_interval(own.to_dict(), scratch)
                row.update(
                    gain=round(d.mean, 3), low=_round(d.low), high=_round(d.high),
                    reading=reading(d.low, d.high),
                )  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def paper_gain() -> float:
    """The paper's ckpt 2 - ckpt 1 top-1 at 224 px on ImageNet (1,281 images a class)."""
    from mlimages.paper.facts import paper_accuracy

    a, b, size = PAPER_COMPARISON
    return round(paper_accuracy(a, size).top1 - paper_accuracy(b, size).top1, 3)


# --- novel classes ------------------------------------------------------------------------------


def novel_point(params: Params) -> dict[str, Any]:
    """A pretraining that never sees the novel leaves, fine-tuned on them."""
    return {
        **_pins(params), "pretrain.hold_out_novel": True, "finetune.task": "novel",
        "finetune.seeds": params.experiments.seeds,
    }  # fmt: skip


def run_novel_classes(profile: str, overrides: dict[str, Any] | None = None) -> pd.DataFrame:
    """Pretrain without the novel leaves, then fine-tune `novel_ckpts` on the novel task."""
    params = load_params(profile, overrides)
    e = params.experiments
    (run,) = sweep.run_points(
        profile, {"novel": novel_point(params)}, "novel_classes", ["05"], overrides,
        {"05": {"ckpt": e.novel_ckpts}},
    )  # fmt: skip
    frames = [_base_rows(run.run_dir, c, params.finetune.base_size) for c in e.novel_ckpts]
    found = pd.concat(frames, ignore_index=True)
    return found[list(NOVEL_COLUMNS)].reset_index(drop=True)


def novel_summary(novel: pd.DataFrame, efficiency: pd.DataFrame | None, k_all: int) -> pd.DataFrame:
    """Gains over ckpt 1 on the novel task beside the same on the seen target task (the
    data-efficiency run at every training image, `k_all`), when it has the same checkpoints."""
    tasks = [novel.assign(task="novel leaves (held out of pretraining)")]
    if efficiency is not None and k_all in set(efficiency["k"]):
        seen = efficiency[efficiency["k"] == k_all].drop(columns="k")
        tasks.insert(0, seen.assign(task="seen leaves (the target task)"))
    return gains(pd.concat(tasks, ignore_index=True), "task")
