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
    atomic_path,
    copy_files_atomic,
    write_json_atomic,
    write_text_atomic,
)
from mlimages.study import sweep

STAGE = layout.EXPERIMENTS
LOSS_COLUMNS = (
    "loss", "seed", "map", "f1_at_5", "map_head", "map_middle", "map_tail", "transfer_top1",
)  # fmt: skip
LOSS_METRICS = LOSS_COLUMNS[2:]
EFFICIENCY_COLUMNS = ("ckpt", "k", "seed", "top1", "top5")
NOVEL_COLUMNS = ("ckpt", "seed", "top1", "top5")
THIRDS = ("head", "middle", "tail")
BASELINE_LOSS = "paper"  # the arm every other loss is compared with
FROM_SCRATCH = 1  # the checkpoint every transfer gain is measured against
# ImageNet-1k's training set: 1,281,167 images of 1,000 classes, where the paper's +1.0 lies.
PAPER_K = 1281
PAPER_COMPARISON = (2, 1, 224)  # its ckpt 2 - ckpt 1 at 224 px
README_START = "<!-- experiments:start -->"
README_END = "<!-- experiments:end -->"
FILES = (
    "loss_ablation.csv", "loss_ablation_summary.csv", "loss_ablation.png",
    "data_efficiency.csv", "data_efficiency_summary.csv", "data_efficiency.png",
    "novel_classes.csv", "novel_classes_summary.csv", "novel_classes.png",
)  # fmt: skip


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
    return pd.DataFrame(rows, columns=list(LOSS_COLUMNS))


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


# --- figures ------------------------------------------------------------------------------------


def _half_width(values: np.ndarray) -> float:
    interval = stats.mean_interval(values)
    return 0.0 if np.isnan(interval.high) else interval.high - interval.mean


def plot_loss_ablation(table: pd.DataFrame):
    """mAP overall and by frequency third, and the transfer, per arm (mean, 95% interval)."""
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(table["loss"]))
    metrics = ["map", "map_head", "map_middle", "map_tail"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [3, 1.4]})
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        own = table[table["loss"] == arm]
        means = [own[m].mean() for m in metrics]
        errors = [_half_width(own[m].to_numpy()) for m in metrics]
        x = np.arange(len(metrics)) + (i - (len(arms) - 1) / 2) * width
        axes[0].bar(x, means, width, yerr=errors, capsize=2, label=arm)
        axes[1].bar(
            i, own["transfer_top1"].mean(), yerr=_half_width(own["transfer_top1"].to_numpy()),
            capsize=3,
        )  # fmt: skip
    axes[0].set_xticks(range(len(metrics)), ["all classes", "head third", "middle", "tail"])
    axes[0].set_ylabel("validation mAP (%)")
    axes[0].set_title("pretraining: mAP by training frequency")
    axes[0].legend(fontsize=7)
    axes[1].set_xticks(range(len(arms)), arms, rotation=30, ha="right", fontsize=7)
    axes[1].set_ylabel("top-1 (%)")
    axes[1].set_title("transfer (ckpt 2 top-1)")
    fig.tight_layout()
    return fig


def plot_data_efficiency(table: pd.DataFrame, summary: pd.DataFrame):
    """Top-1 against K per checkpoint, and the gain over ckpt 1 against K with the paper's
    point (ImageNet, 1,281 images a class) where it falls on the same axis."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for ckpt in sorted(set(table["ckpt"])):
        own = table[table["ckpt"] == ckpt]
        ks = sorted(set(own["k"]))
        means = [own[own["k"] == k]["top1"].mean() for k in ks]
        errors = [_half_width(own[own["k"] == k]["top1"].to_numpy()) for k in ks]
        axes[0].errorbar(ks, means, yerr=errors, marker="o", capsize=3, label=f"ckpt {ckpt}")
    with_gain = summary.dropna(subset=["gain"])
    for ckpt in sorted(set(with_gain["ckpt"])):
        own = with_gain[with_gain["ckpt"] == ckpt]
        low = (own["gain"] - own["low"].astype(float)).fillna(0)
        high = (own["high"].astype(float) - own["gain"]).fillna(0)
        axes[1].errorbar(
            own["k"], own["gain"], yerr=[low, high], marker="o", capsize=3,
            label=f"ckpt {ckpt} - ckpt {FROM_SCRATCH}",
        )  # fmt: skip
    axes[1].plot([PAPER_K], [paper_gain()], marker="*", markersize=14, linestyle="none",
                 color="black", label="paper: ckpt 2 - 1, ImageNet (1,281 a class)")  # fmt: skip
    axes[1].axhline(0, color="grey", linewidth=0.8)
    for ax, title in zip(axes, ("top-1 against K", "gain over from-scratch"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("training images a class (K, log scale)")
        ax.set_title(title)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("top-1 (%)")
    axes[1].set_ylabel("top-1 points (95% interval)")
    fig.tight_layout()
    return fig


def plot_novel_classes(summary: pd.DataFrame):
    """Gains over ckpt 1 on seen and on novel leaves, per checkpoint (95% intervals)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    rows = summary.dropna(subset=["gain"]).reset_index(drop=True)
    labels = [f"ckpt {r.ckpt}\n{r.task.split(' (')[0]}" for r in rows.itertuples()]
    low = (rows["gain"] - rows["low"].astype(float)).fillna(0)
    high = (rows["high"].astype(float) - rows["gain"]).fillna(0)
    ax.bar(range(len(rows)), rows["gain"], yerr=[low, high], capsize=4)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel(f"top-1 gain over ckpt {FROM_SCRATCH} (points)")
    ax.set_title("transfer to seen and to novel leaves")
    fig.tight_layout()
    return fig


# --- saving and publishing ----------------------------------------------------------------------


def save(params: Params, tables: dict[str, pd.DataFrame], figures: dict[str, Any]) -> Path:
    """Tables as CSV, figures as PNG, into `<run>/experiments/` (write, then rename)."""
    out = params.stage_dir(STAGE)
    for name, frame in tables.items():
        write_text_atomic(out / f"{name}.csv", frame.to_csv(index=False))
    for name, fig in figures.items():
        with atomic_path(out / f"{name}.png") as tmp:
            fig.savefig(tmp, dpi=110)
    return out


def _interval(row: pd.Series, column: str) -> str:
    """`+3.4 [+2.9, +4.0]` from a summary row's difference column and its interval."""
    if pd.isna(row["low"]):
        return f"{row[column]:+.1f} (no interval)"
    return f"{row[column]:+.1f} [{row['low']:+.1f}, {row['high']:+.1f}]"


def loss_findings(summary: pd.DataFrame) -> str:
    """One clause an arm: its overall, head and tail mAP against its reference arm."""
    sentences = []
    for arm in dict.fromkeys(summary.loc[summary["against"].notna(), "loss"]):
        rows = summary[summary["loss"] == arm].set_index("metric")
        reference = rows["against"].iloc[0]
        parts = [
            f"{label} {_interval(rows.loc[metric], 'difference')}"
            for metric, label in (("map", "mAP"), ("map_head", "head"), ("map_tail", "tail"))
        ]
        sentences.append(f"`{arm}` against `{reference}`: " + ", ".join(parts))
    return "; ".join(sentences) + " (mAP points)."


def gain_findings(summary: pd.DataFrame, by: str, ckpt: int) -> str:
    """`ckpt`'s gain over ckpt 1 at every value of `by`, in order."""
    rows = summary[summary["ckpt"] == ckpt]
    return ", ".join(f"{row[by]}: {_interval(row, 'gain')}" for _, row in rows.iterrows())


def _table(frame: pd.DataFrame) -> str:
    from mlimages.report.text_tables import markdown_table

    return markdown_table(frame.astype(object).where(frame.notna(), "-"))


def readme_section(params: Params, loss: pd.DataFrame, efficiency: pd.DataFrame,
                   novel: pd.DataFrame) -> str:  # fmt: skip
    """The README's experiments section: each finding as measured, then its table."""
    where = f"{params.report.publish_dir}/{STAGE}" if params.report.publish_dir else STAGE
    e = params.experiments
    transfer = e.k_ckpts[1] if len(e.k_ckpts) > 1 else e.k_ckpts[0]
    lines = [
        f"Generated by notebook 08 on the `{params.profile}` profile (`make experiments`); "
        f"tables and figures in `{where}/`. Differences are paired over seeds, with 95% "
        "intervals; a reading (*higher*, *lower*) is given only where the interval excludes "
        "zero.",
        "",
        f"**Loss ablation** ({len(e.losses)} losses x {len(e.loss_seeds)} pretraining seeds; "
        "mAP and F1@5 on the validation images, by training-frequency third; transfer = ckpt "
        f"{e.transfer_ckpt} top-1, one fine-tuning a pretraining): {loss_findings(loss)}",
        "",
        _table(loss[loss["against"].notna()]),
        "",
        f"**Data efficiency**: ckpt {transfer}'s top-1 gain over ckpt {FROM_SCRATCH} by K "
        f"training images a class: {gain_findings(efficiency, 'k', transfer)}; the paper's is "
        f"{paper_gain():+.1f} at K = {PAPER_K} (ImageNet).",
        "",
        _table(efficiency),
        "",
        "**Novel classes** (leaves held out of pretraining, their ancestors seen): ckpt "
        f"{transfer}'s gain over ckpt {FROM_SCRATCH}, "
        f"{gain_findings(novel, 'task', transfer)}. The novel task has "
        f"{params.synth.novel_classes} classes, the target task {params.synth.target_classes} "
        "(chance differs): compare the gains, not the levels.",
        "",
        _table(novel),
    ]
    return "\n".join(lines) + "\n"


def publish(params: Params, out: Path, section: str) -> list[Path]:
    """Copy the experiments' files to `<report.publish_dir>/experiments/` and rewrite the
    README's experiments section; nothing on profiles that publish nothing (smoke)."""
    from mlimages.report.paper_vs_ours import update_readme

    written: list[Path] = []
    if params.report.publish_dir:
        target = params.resolve_path(params.report.publish_dir) / STAGE
        written += copy_files_atomic(FILES, out, target)
    if params.report.readme:
        readme = params.resolve_path(params.report.readme)
        update_readme(readme, section, README_START, README_END)
        written.append(readme)
    return written
