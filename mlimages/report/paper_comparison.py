"""Paper vs ours: our fine-tuning results beside the paper's figures, checkpoint by checkpoint,
and the dataset and multi-label statistics beside the published ones.

Takes the fine-tuning results (`paper_vs_ours.load_results`), reads what the other stages wrote
(`explore/metrics.json`, `download/metrics.json`, `evaluate/multilabel.csv`) and sets them
beside the published numbers of `mlimages.paper.facts`. Our two evaluation sizes play the
paper's two: `finetune.base_size` is reported in the columns of 224 and `finetune.large_size`
in those of 299 (`ours_img_size_224` says which size it was).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlimages.config import layout
from mlimages.config.params import Params
from mlimages.paper import facts
from mlimages.report import verdicts

METRICS = ("top1", "top5")


def size_roles(params: Params) -> dict[int, int]:
    """Our evaluation size -> the paper's size it plays (base 224, large 299)."""
    f = params.finetune
    return {f.base_size: facts.PAPER_SIZES[0], f.large_size: facts.PAPER_SIZES[1]}


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# --- paper vs ours -------------------------------------------------------------------------


def comparison(results: pd.DataFrame, params: Params) -> pd.DataFrame:
    """One row per checkpoint: the paper's figure, our mean and spread over seeds, the gap."""
    roles = size_roles(params)
    unknown = sorted(set(results["img_size"]) - set(roles))
    if unknown:
        raise ValueError(
            f"results: evaluation sizes {unknown} are neither finetune.base_size "
            f"({params.finetune.base_size}) nor finetune.large_size ({params.finetune.large_size})"
        )
    rows = []
    for ckpt, group in results.groupby("ckpt", sort=True):
        ckpt = int(ckpt)
        row: dict[str, Any] = {
            "ckpt": ckpt,
            "setting": group["setting"].iloc[0],
            "paper_setting": facts.CHECKPOINT_SETTINGS.get(ckpt, ""),
            "model": group["model"].iloc[0],
            "train_sizes": group["train_sizes"].iloc[0],
            "seeds": int(group["seed"].nunique()),
        }
        for ours_size, role in roles.items():
            at = group[group["img_size"] == ours_size]
            row[f"ours_img_size_{role}"] = ours_size if len(at) else np.nan
            published = (
                facts.paper_accuracy(ckpt, role) if ckpt in facts.CHECKPOINT_SETTINGS else None
            )
            earlier = facts.reimplementation_accuracy(ckpt, role) if published else None
            for metric in METRICS:
                ours = at[metric].to_numpy(dtype=float)
                mean = float(ours.mean()) if len(ours) else np.nan
                std = float(ours.std(ddof=1)) if len(ours) > 1 else np.nan
                value = getattr(published, metric) if published else np.nan
                row[f"paper_{metric}_{role}"] = value
                row[f"ours_{metric}_{role}_mean"] = round(mean, 2)
                row[f"ours_{metric}_{role}_std"] = round(std, 2)
                row[f"diff_{metric}_{role}"] = round(mean - value, 2)
                row[f"reimpl_{metric}_{role}"] = getattr(earlier, metric) if earlier else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def per_seed(results: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Every run (timm-style rows), with the size it plays and the paper's figure beside it."""
    roles = size_roles(params)
    frame = results.copy()
    frame["paper_img_size"] = frame["img_size"].map(roles)
    for metric in METRICS:
        frame[f"paper_{metric}"] = [
            getattr(facts.paper_accuracy(c, s), metric, np.nan)
            if c in facts.CHECKPOINT_SETTINGS and facts.paper_accuracy(c, s)
            else np.nan
            for c, s in zip(frame["ckpt"], frame["paper_img_size"], strict=True)
        ]
    return frame


def _cell(row: pd.Series, metric: str, role: int) -> str:
    mean, std = row[f"ours_{metric}_{role}_mean"], row[f"ours_{metric}_{role}_std"]
    if pd.isna(mean):
        return "–"
    text = f"{mean:.1f}" + ("" if pd.isna(std) else f" ± {std:.1f}")
    diff = row[f"diff_{metric}_{role}"]
    return text + ("" if pd.isna(diff) else f" ({diff:+.1f})")


def _paper_cell(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:g}"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison as a reader reads it: paper, ours ± sd over seeds (difference)."""
    out = pd.DataFrame({"ckpt": table["ckpt"], "setting": table["setting"]})
    for role in facts.PAPER_SIZES:
        sizes = table[f"ours_img_size_{role}"].dropna().astype(int).unique()
        ours_px = "/".join(str(s) for s in sizes) or "–"
        for metric, label in (("top1", "top-1"), ("top5", "top-5")):
            out[f"{label} @{role} paper"] = table[f"paper_{metric}_{role}"].map(_paper_cell)
            out[f"{label} @{ours_px} ours"] = [_cell(r, metric, role) for _, r in table.iterrows()]
    return out


def summary_sentences(
    claims: list[verdicts.ClaimResult], params: Params, param_count: float, images: int
) -> str:
    """What the tables mean, computed from them: a sentence a claim (exactly the checkpoints
    it names, its interval and verdict), the verdict rule, which figures move with the
    machine, then why absolute accuracies are not the paper's (`param_count` in millions)."""
    return f"{verdicts.claims_text(claims)} {comparability_sentence(params, param_count, images)}"


def comparability_sentence(params: Params, param_count: float, images: int) -> str:
    """Why our absolute accuracies are not comparable with the paper's."""
    f = params.finetune
    return (
        f"Absolute accuracies are not comparable with the paper's: ours come from a "
        f"{param_count:.2f}M-parameter ResNet pretrained on {images:,} generated images and "
        f"fine-tuned at {f.base_size}/{f.large_size} px on a {_target_description(params)}, "
        "the paper's from ResNet-101 on 17.6M photos and ImageNet at 224/299 px, so only the "
        "direction and rough size of the effects carry over (see the deviations)."
    )


def _target_description(params: Params) -> str:
    if params.data.uses_miniature:
        s = params.synth
        return (
            f"{s.target_classes}-class target task with {s.target_train_per_class} images a class"
        )
    return "target task"


# --- dataset statistics --------------------------------------------------------------------


def dataset_table(params: Params) -> pd.DataFrame:
    """The paper's statistics beside ours: the full list (explore) and the chosen subset
    (download); hierarchy figures on the profile's dictionary."""
    explore = read_json(params.run_dir / layout.EXPLORE / layout.METRICS_FILE) or {}
    download = read_json(params.run_dir / layout.DOWNLOAD / layout.METRICS_FILE) or {}
    full = dict(explore.get("measured", {}))
    if params.data.dictionary:  # the authors' (or any named) dictionary: measure it here
        full.update(hierarchy_figures(params))
    splits = download.get("splits", {})
    chosen = (download.get("subset") or {}).get("subset", {})
    subset: dict[str, float] = {}
    if "train" in splits:
        subset["train_images"] = splits["train"]["ok"]
    if "val" in splits:
        subset["val_images"] = splits["val"]["ok"]
    if chosen:
        subset["labels_per_image_mean"] = chosen["labels_per_image_mean"]
        if chosen.get("classes_covered"):
            subset["images_per_class_mean"] = round(chosen["labels"] / chosen["classes_covered"], 1)
    rows = []
    for key, published in facts.dataset_statistics().items():
        ours_full = full.get(key, np.nan)
        rows.append(
            {
                "figure": published.description,
                "key": key,
                "paper": published.value,
                "ours_full_list": _round(ours_full),
                "ours_subset": _round(subset.get(key, np.nan)),
                "ours_over_paper": float(f"{ours_full / published.value:.4g}"),
                "source": published.source,
            }
        )
    return pd.DataFrame(rows)


def hierarchy_figures(params: Params) -> dict[str, float]:
    """Classes, longest path and mean depth of the profile's dictionary (path or URL)."""
    from mlimages.data.taxonomy import load_dictionary

    source = params.data.dictionary
    assert source is not None
    if not source.startswith(("http://", "https://")):
        source = str(params.resolve_path(source))
    stats = load_dictionary(source).stats()
    return {k: stats[k] for k in ("classes", "max_depth", "mean_depth")}


def _round(value: float, digits: int = 2) -> float:
    return float(round(value, digits)) if not pd.isna(value) else np.nan


def multilabel_table(params: Params) -> pd.DataFrame:
    """The paper's instance-level F1@5 and F1@10 beside ours (notebook 06's multilabel.csv)."""
    ours = _multilabel_f1(params.run_dir / layout.EVALUATE / "multilabel.csv")
    return pd.DataFrame(
        [
            {
                "figure": p.description,
                "paper": p.value,
                "ours": ours.get(int(p.key.rsplit("_", 1)[1]), np.nan),
                "source": p.source,
            }
            for p in facts.MULTILABEL_RESULTS
        ]
    )


def _multilabel_f1(path: Path) -> dict[int, float]:
    """k -> instance-level F1 (%) from notebook 06's multilabel.csv (`k`, `f1_at_k` in percent)."""
    if not path.is_file():
        return {}
    frame = pd.read_csv(path)
    missing = {"k", "f1_at_k"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}; expected k and f1_at_k (%)")
    values = frame.set_index("k")["f1_at_k"].astype(float)
    return {int(k): round(float(v), 2) for k, v in values.items()}
