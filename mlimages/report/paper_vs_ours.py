"""Paper vs ours (notebook 07): the claims and their verdicts, the baselines, the comparison
tables, the deviations, the figures, publishing.

Reads what the earlier stages wrote (`finetune/ckpt<N>/results.csv`, `explore/metrics.json`,
`download/metrics.json`, `evaluate/multilabel.csv`) and the published numbers of
`mlimages.paper.facts`; writes CSV, Markdown and LaTeX into `runs/<profile>/report/` and, on a
profile that names them (`report.publish_dir`, `report.readme`: the default profile only),
copies them to `results/` and rewrites the README's results section. Every table is a pure
function of those files and the parameters, so a rerun on the same inputs writes the same
bytes.

Our two evaluation sizes play the paper's two: `finetune.base_size` is reported in the
columns of 224 and `finetune.large_size` in those of 299 (`ours_img_size_224` says which
size it was). The claims (`claims.csv`: paper's difference, ours over paired seeds with a 95%
interval, verdict) and the baselines (`baselines.csv`) come from `mlimages.report.verdicts`; they
lead the README's results section.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlimages.config.params import Params, find_profile, load_params
from mlimages.core.atomic import copy_files_atomic, write_json_atomic, write_text_atomic
from mlimages.core.fingerprint import flatten
from mlimages.paper import facts
from mlimages.report import verdicts
from mlimages.train import plan

STAGE = "report"
RESULT_COLUMNS = (
    "ckpt", "setting", "seed", "model", "img_size", "top1", "top5",
    "param_count", "train_sizes", "steps",
)  # fmt: skip
OPTIONAL_COLUMNS = ("train_top1",)  # kept where notebook 05 writes them
METRICS = ("top1", "top5")
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
TABLES = (
    "claims.csv", "claims.md", "baselines.csv", "baselines.md",
    "paper_vs_ours.csv", "paper_vs_ours.md", "paper_vs_ours.tex", "per_seed.csv",
    "dataset_statistics.csv", "multilabel.csv", "deviations.md", "deviations.csv",
    "parameter_differences.csv", "plans.csv", "paper_run.md",
)  # fmt: skip
FIGURES = ("checkpoints.png", "dataset_statistics.png", "loss_coefficients.png")

# --- inputs --------------------------------------------------------------------------------


def results_paths(params: Params) -> list[Path]:
    return sorted((params.run_dir / "finetune").glob("ckpt*/results.csv"))


def load_results(params: Params) -> pd.DataFrame:
    """Every `finetune/ckpt<N>/results.csv` of the profile, checked against the contract."""
    paths = results_paths(params)
    if not paths:
        raise FileNotFoundError(
            f"no fine-tuning results under {params.run_dir / 'finetune'}; expected "
            "ckpt<N>/results.csv from notebook 05 (mlimages finetune)"
        )
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
        missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; expected {list(RESULT_COLUMNS)}")
        if frame[["top1", "top5"]].isna().any().any() or len(frame) == 0:
            raise ValueError(f"{path}: expected one row per (seed, size) with top1 and top5")
        optional = [c for c in OPTIONAL_COLUMNS if c in frame.columns]
        frames.append(frame[[*RESULT_COLUMNS, *optional]])
    results = pd.concat(frames, ignore_index=True)
    return results.sort_values(["ckpt", "img_size", "seed"], kind="stable").reset_index(drop=True)


def size_roles(params: Params) -> dict[int, int]:
    """Our evaluation size -> the paper's size it plays (base 224, large 299)."""
    f = params.finetune
    return {f.base_size: facts.PAPER_SIZES[0], f.large_size: facts.PAPER_SIZES[1]}


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

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


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency)."""
    head = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for values in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def latex_table(frame: pd.DataFrame, caption: str) -> str:
    """A booktabs tabular inside a table float (no jinja2 dependency)."""

    def esc(value: object) -> str:
        text = str(value)
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                     ("#", r"\#"), ("±", r"$\pm$"), ("–", "--"), ("->", r"$\to$")):  # fmt: skip
            text = text.replace(a, b)
        return text

    spec = "r" + "l" + "r" * (len(frame.columns) - 2)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{esc(caption)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(esc(c) for c in frame.columns) + r" \\",
        r"\midrule",
        *(" & ".join(esc(v) for v in row) + r" \\" for row in frame.itertuples(index=False)),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


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
    explore = _read_json(params.run_dir / "explore" / "metrics.json") or {}
    download = _read_json(params.run_dir / "download" / "metrics.json") or {}
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
    ours = _multilabel_f1(params.run_dir / "evaluate" / "multilabel.csv")
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


# --- deviations ----------------------------------------------------------------------------

# Keys that describe where files are or how a run is watched, not the method.
_NOT_METHOD = (
    "profile", "seed", "runs_dir", "run_name", "data.", "synth.", "subset.", "download.",
    "explore.", "records.", "report.", "plan.", "experiments.",
    "pipeline.preview_images", "pipeline.throughput_images", "pipeline.shuffle_buffer",
    "pipeline.cycle_length", "finetune.ckpt", "finetune.init_checkpoint", "finetune.strategy",
    "pretrain.strategy", "pretrain.workers", "pretrain.max_seconds",
)  # fmt: skip
_NOT_METHOD_LEAVES = ("progress", "checkpoint_every", "log_every", "eval_every", "eval_images",
                      "eval_batch")  # fmt: skip


def parameter_differences(params: Params) -> pd.DataFrame:
    """Every method parameter whose value differs from the `paper` profile's (the authors')."""
    reference = flatten(load_params(find_profile("paper")).model_dump(mode="json"))
    ours = flatten(params.model_dump(mode="json"))
    rows = [
        {"key": key, "paper": _text(reference.get(key)), "ours": _text(value)}
        for key, value in ours.items()
        if reference.get(key) != value
        and not key.startswith(_NOT_METHOD)
        and key.rsplit(".", 1)[-1] not in _NOT_METHOD_LEAVES
    ]
    return pd.DataFrame(rows, columns=["key", "paper", "ours"])


def _text(value: Any) -> str:
    return "–" if value is None else str(value)


def deviations(params: Params, results: pd.DataFrame) -> pd.DataFrame:
    """Every deviation from the paper's setup, computed from the resolved parameters and runs."""
    download = _read_json(params.run_dir / "download" / "metrics.json") or {}
    splits = download.get("splits", {})
    images = splits.get("train", {}).get("ok") or plan.profile_images(params)
    classes = (
        params.model.num_classes
        or params.data.num_classes
        or (_read_json(params.run_dir / "explore" / "metrics.json") or {})
        .get("hierarchy", {})
        .get("classes")
        or (plan.mini_classes() if params.data.uses_miniature else "?")
    )
    p, m, s, f = params.pretrain, params.model, params.schedule, params.finetune
    blocks = list(m.blocks) if m.blocks else list(plan.DEPTHS[m.depth])
    epochs = p.steps * p.global_batch / images
    param_count = float(results["param_count"].iloc[0]) if len(results) else None  # millions
    eval_sizes = sorted(int(x) for x in results["img_size"].unique())
    train_sizes = sorted(str(x) for x in results["train_sizes"].unique())
    ft_steps = sorted(int(x) for x in results["steps"].unique())
    seeds = int(results["seed"].nunique()) if len(results) else 0
    target = (
        f"{splits.get('target_train', {}).get('ok', '?')} train / "
        f"{splits.get('target_val', {}).get('ok', '?')} val images, "
        f"{params.synth.target_classes} classes (generated)"
        if params.data.uses_miniature
        else "the profile's target lists"
    )
    hue_paper = load_params(find_profile("paper")).pipeline.hue_delta
    rows = [
        ("data size", f"{plan.PAPER_IMAGES:,} images, {plan.PAPER_CLASSES:,} classes",
         f"{images:,} images, {classes} classes",
         "the miniature is what 2 CPU cores can train in minutes (DESIGN §5)"),
        ("target task", "ImageNet-1k: 1.28M train / 50,000 val images, 1,000 classes", target,
         "ImageNet cannot be fetched here; the generated target task plays it"),
        ("resolution", "pretrain 224; fine-tune 224 and/or 299; evaluate at 224 and 299",
         f"pretrain {p.image_size}; fine-tune {', '.join(train_sizes)}; evaluate at "
         f"{', '.join(map(str, eval_sizes))}",
         "CPU training rates at 224 px are about 1 image/s (DESIGN §6)"),
        ("model depth and width", "ResNet-101 [3, 4, 23, 3], width 64, 44.5M parameters "
         "(1,000 classes)",
         f"blocks {blocks}, width {m.width}"
         + (f", {param_count:.2f}M parameters" if param_count else ""),
         "the same architecture, shallower and narrower"),
        ("pretraining length", f"{plan.PAPER_EPOCHS} epochs at a global batch of "
         f"{plan.PAPER_GLOBAL_BATCH:,} (the authors' script: {plan.PAPER_SCRIPT_STEPS:,} steps)",
         f"{p.steps:,} steps at a global batch of {p.global_batch} = {epochs:.1f} epochs", ""),
        ("learning-rate schedule", "0.01 x1.297 every 4,400 steps to 0.08 at 35,200, then x0.1 "
         "every 110k steps",
         f"{s.warmup_lr} x{s.warmup_factor} every {s.warmup_interval} steps to {s.lr} at "
         f"{s.warmup_steps}, then x{s.decay_factor} every {s.decay_steps} steps",
         "the paper's shape on the shorter run"),
        ("fine-tuning length", "600k steps at a batch of 256",
         f"{', '.join(f'{x:,}' for x in ft_steps)} steps at a batch of {f.global_batch}",
         "what 6 checkpoint settings x the seeds afford on the machine"),
        ("fine-tuning schedule", "lr 0.1 at 256, x0.1 at 1/4, 2/4 and 3/4 of the run, "
         "no warm-up",
         f"lr {f.lr} at {f.reference_batch or f.global_batch} "
         f"({_scaled(f.lr, f.global_batch, f.reference_batch)} at {f.global_batch}), "
         f"x{f.decay_factor} at {_fractions(f.decay_at)} of the run, "
         + (f"linear warm-up over {f.warmup_fraction:.0%}" if f.warmup_fraction else "no warm-up"),
         "the last quarter at 1e-4 of the rate learns nothing in a short run; a warm-up goes "
         "with the linear scaling rule (Goyal et al. 2017)"
         if list(f.decay_at) != [0.25, 0.5, 0.75] or f.warmup_fraction else ""),
        ("224 then 299 (ckpt 3)", "299 in the late epochs",
         f"{f.large_size} px for the last {f.large_fraction:.0%} of the steps",
         "the large phase starts at the first decay, where the rate still learns"
         if f.large_fraction != 0.25 else ""),
        ("batch-norm statistics at evaluation", "moving averages (momentum 0.997, 600k steps)",
         f"recomputed on {f.precise_bn_batches} training batches at the last training size "
         "(precise BN)" if f.precise_bn_batches else "moving averages",
         "a short run leaves the moving averages near their start" if f.precise_bn_batches
         else ""),
        ("fine-tuning crop", "area [0.05, 1] of the image",
         f"area [{params.pipeline.finetune_min_area:g}, 1] of the image",
         "the miniature's objects fill 10-30% of the frame; a 5% crop often holds none of it"
         if params.pipeline.finetune_min_area != 0.05 else ""),
        ("rotation fill", "zeros (black corners)",
         "zeros (black corners)" if params.pipeline.rotation_fill == "zeros"
         else "the nearest edge pixel",
         "black is a class colour of the miniature" if params.pipeline.rotation_fill != "zeros"
         else ""),
        ("colour augmentation", f"random hue ±{hue_paper}",
         f"random hue ±{params.pipeline.hue_delta}",
         "the miniature's leaf classes are colours: hue jitter would relabel them"
         if params.pipeline.hue_delta != hue_paper else ""),
        ("batch-norm momentum", "0.997", _bn_momentum(params), ""),
        ("runs", "one run a checkpoint", f"{seeds} seeds a checkpoint (mean ± sd)", ""),
        ("hardware", f"{plan.PAPER_GPUS} GPUs, {plan.PAPER_HOURS:.0f} hours (TFplus)",
         f"{os.cpu_count()} CPU cores ({platform.machine()}), TensorFlow {_tf_version()}",
         "a laptop-sized study; see the planner for what the full run costs now"),
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["aspect", "paper", "ours", "why"])
    frame["deviates"] = [_differs(a, b) for a, b in zip(frame["paper"], frame["ours"], strict=True)]
    return frame


def _scaled(lr: float, batch: int, reference: int | None) -> str:
    """The rate at `batch` by the linear scaling rule (`recipe.lr_scale`)."""
    from mlimages.paper.recipe import lr_scale

    return f"{lr * lr_scale(batch, reference):g}" if reference else f"{lr:g}, not scaled"


def _fractions(values: list[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _differs(paper_text: str, ours_text: str) -> bool:
    return paper_text.strip() != ours_text.split(" (")[0].strip()


def _bn_momentum(params: Params) -> str:
    """The profile's BN momentum where a section sets one.

    Else mlimages.paper.model's (the paper's)."""
    flat = flatten(params.model_dump(mode="json"))
    keys = [k for k in flat if "bn" in k and "momentum" in k]
    if keys:
        return ", ".join(f"{flat[k]} ({k})" for k in keys)
    from mlimages.paper.model import BN_MOMENTUM

    return f"{BN_MOMENTUM}"


def _tf_version() -> str:
    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def deviations_markdown(frame: pd.DataFrame, differences: pd.DataFrame) -> str:
    """The deviations in the style of BiT's README: one bullet each, then the parameter list."""
    lines = [
        "## Deviations from the paper",
        "",
        "This reproduction follows the paper's method (model, loss, augmentation, schedules) "
        "but differs from its setup as follows:",
        "",
    ]
    for row in frame[frame["deviates"]].itertuples(index=False):
        why = f" {row.why[0].upper()}{row.why[1:]}." if row.why else ""
        lines.append(f"- **{row.aspect}**: {row.ours} (paper: {row.paper}).{why}")
    same = frame.loc[~frame["deviates"], "aspect"].tolist()
    if same:
        lines += ["", f"As in the paper: {', '.join(same)}."]
    lines += [
        "",
        "Every method parameter that differs from the `paper` profile (the authors' values):",
        "",
        markdown_table(differences) if len(differences) else "(none)\n",
    ]
    return "\n".join(lines)


# --- plans ---------------------------------------------------------------------------------

PLAN_COLUMNS = (
    "label", "model", "image_size", "images", "epochs", "gpu", "gpus", "images_per_s_per_gpu",
    "scaling", "disk_gb", "download_hours", "gpu_hours", "wall_hours", "cost",
)  # fmt: skip


def plans(params: Params) -> pd.DataFrame:
    """The paper's run beside the full run on 1, 8, 64... current GPUs, and every profile."""
    pp = params.plan
    rows = [plan.paper_run(pp.price_per_gpu_hour, pp.download_mbit_per_s)]
    for count in pp.gpu_counts:
        rows.append(
            plan.plan(
                plan.PAPER_IMAGES,
                plan.PAPER_EPOCHS,
                depth=101,
                gpu=pp.gpu,
                gpus=count,
                images_per_s=pp.images_per_s,
                bytes_per_original=pp.bytes_per_original,
                download_mbit_per_s=pp.download_mbit_per_s,
                price_per_gpu_hour=pp.price_per_gpu_hour,
                label=f"full ML-Images, {count} x {pp.gpu}",
            )
        )
    for path in sorted(find_profile("paper").parent.glob("*.yaml")):
        other = load_params(path)
        rows.append(plan.profile_plan(other.model_copy(update={"plan": pp})))
    frame = pd.DataFrame([r.as_dict() for r in rows])[list(PLAN_COLUMNS)]
    digits = {"epochs": 2, "images_per_s_per_gpu": 1, "scaling": 3, "disk_gb": 3}
    return frame.round({**digits, "download_hours": 2, "gpu_hours": 2, "wall_hours": 2, "cost": 2})


def gpu_table() -> pd.DataFrame:
    return pd.DataFrame([vars(g) for g in plan.GPUS.values()])


# --- figures -------------------------------------------------------------------------------


def plot_checkpoints(table: pd.DataFrame):
    """Per checkpoint, ours (mean, sd over seeds as error bars) against the paper's figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    x = np.arange(len(table))
    for col, role in enumerate(facts.PAPER_SIZES):
        for row, (metric, label) in enumerate((("top1", "top-1"), ("top5", "top-5"))):
            ax = axes[row, col]
            ax.bar(x - 0.2, table[f"paper_{metric}_{role}"], 0.4, label="paper", color="0.6")
            ax.bar(
                x + 0.2,
                table[f"ours_{metric}_{role}_mean"],
                0.4,
                yerr=table[f"ours_{metric}_{role}_std"].fillna(0),
                capsize=3,
                label="ours (mean ± sd over seeds)",
                color="tab:blue",
            )
            sizes = table[f"ours_img_size_{role}"].dropna().astype(int).unique()
            ours_px = "/".join(map(str, sizes))
            ax.set(
                ylim=(0, 100),
                ylabel=f"{label} (%)",
                title=f"{label}: paper @{role}, ours @{ours_px}",
            )
            ax.set_xticks(x, [f"ckpt {c}" for c in table["ckpt"]])
    axes[0, 0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_dataset(table: pd.DataFrame):
    """Each statistic of ours over the paper's (log scale): how far the miniature is."""
    import matplotlib.pyplot as plt

    shown = table.dropna(subset=["ours_over_paper"])
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(shown), 2) + 1))
    ax.barh(shown["figure"], shown["ours_over_paper"], color="tab:blue")
    ax.axvline(1.0, color="k", lw=1)
    ax.set(xscale="log", xlabel="ours / paper (log scale; 1 = equal)",
           title="Dataset statistics: ours against the paper's")  # fmt: skip
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


# --- the stage -----------------------------------------------------------------------------


def build(params: Params) -> dict[str, Any]:
    """Every table of the report, from the runs' files and the parameters."""
    results = load_results(params)
    table = comparison(results, params)
    differences = parameter_differences(params)
    devs = deviations(params, results)
    download = _read_json(params.run_dir / "download" / "metrics.json") or {}
    images = download.get("splits", {}).get("train", {}).get("ok") or plan.profile_images(params)
    claims = verdicts.claim_results(results, params)
    multilabel = verdicts.read_multilabel(params.run_dir / "evaluate" / "multilabel.csv")
    baselines = verdicts.baselines_table(results, params, multilabel)
    param_count = float(results["param_count"].iloc[0])
    return {
        "claim_results": claims,
        "claims": verdicts.claims_table(claims),
        "claims_display": verdicts.claims_display(claims),
        "claims_text": verdicts.claims_text(claims),
        "baselines": baselines,
        "baselines_display": verdicts.baselines_display(baselines),
        "results": results,
        "comparison": table,
        "display": display_table(table),
        "per_seed": per_seed(results, params),
        "dataset": dataset_table(params),
        "multilabel": multilabel_table(params),
        "deviations": devs,
        "differences": differences,
        "deviations_md": deviations_markdown(devs, differences),
        "plans": plans(params),
        "paper_run": plan.paper_arithmetic(),
        "comparability": comparability_sentence(params, param_count, int(images)),
        "summary": summary_sentences(claims, params, param_count, int(images)),
    }


def save(report: dict[str, Any], params: Params) -> Path:
    """Write the tables (CSV, Markdown, LaTeX), figures and metrics.json to the stage folder."""
    import matplotlib.pyplot as plt

    out = params.stage_dir(STAGE)
    write_csv_atomic(report["claims"], out / "claims.csv")
    write_text_atomic(
        out / "claims.md",
        markdown_table(report["claims_display"]) + "\n" + report["claims_text"] + "\n",
    )
    write_csv_atomic(report["baselines"], out / "baselines.csv")
    write_text_atomic(
        out / "baselines.md",
        "Every figure beside a baseline computed in the same run (percent).\n\n"
        + markdown_table(report["baselines_display"]),
    )
    report["comparison"].to_csv(out / "paper_vs_ours.csv", index=False)
    caption = "ImageNet-val top-1/top-5 (%) of the paper against ours (mean ± sd over seeds)"
    write_text_atomic(
        out / "paper_vs_ours.md",
        markdown_table(report["display"]) + "\n" + report["comparability"] + "\n",
    )
    write_text_atomic(out / "paper_vs_ours.tex", latex_table(report["display"], caption))
    report["per_seed"].to_csv(out / "per_seed.csv", index=False)
    report["dataset"].to_csv(out / "dataset_statistics.csv", index=False)
    report["multilabel"].to_csv(out / "multilabel.csv", index=False)
    report["deviations"].to_csv(out / "deviations.csv", index=False)
    report["differences"].to_csv(out / "parameter_differences.csv", index=False)
    write_text_atomic(out / "deviations.md", report["deviations_md"])
    report["plans"].to_csv(out / "plans.csv", index=False)
    arithmetic = "\n".join(f"- {line}" for line in report["paper_run"])
    write_text_atomic(out / "paper_run.md", f"## The paper's run, replayed\n\n{arithmetic}\n")
    for name, fig in (
        ("checkpoints.png", plot_checkpoints(report["comparison"])),
        ("dataset_statistics.png", plot_dataset(report["dataset"])),
        ("loss_coefficients.png", _coefficients_figure(params)),
    ):
        fig.savefig(out / name, dpi=100, metadata={"Software": None})
        plt.close(fig)
    write_json_atomic(
        out / "metrics.json",
        {
            "claims": _records(report["claims"]),
            "checkpoints": report["comparison"].replace({np.nan: None}).to_dict("records"),
            "summary": report["summary"],
            "deviations": int(report["deviations"]["deviates"].sum()),
        },
    )
    return out


def _coefficients_figure(params: Params):
    """The adaptive loss's class weights during pretraining (notebook 04's figure), or a
    figure that says why there is none."""
    import matplotlib.pyplot as plt

    from mlimages.report import training
    from mlimages.train import pretrain

    try:
        return training.plot_coefficients(params.run_dir / pretrain.STAGE)
    except (FileNotFoundError, ValueError) as exc:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.text(0.5, 0.5, f"no loss coefficients: {exc}", ha="center", va="center", fontsize=7)
        ax.set_axis_off()
        return fig


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> Path:
    """A table as CSV, written then renamed."""
    return write_text_atomic(path, frame.to_csv(index=False))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: NaN as None."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def publish(params: Params, out: Path) -> list[Path]:
    """Copy the tables and figures to `report.publish_dir` and rewrite `report.readme`'s
    results section; nothing on profiles that set neither (smoke runs never overwrite them)."""
    written: list[Path] = []
    if params.report.publish_dir:
        target = params.resolve_path(params.report.publish_dir)
        written += copy_files_atomic((*TABLES, *FIGURES), out, target)
    if params.report.readme:
        readme = params.resolve_path(params.report.readme)
        section = readme_section(out, params)
        update_readme(readme, section)
        written.append(readme)
    return written


def readme_section(out: Path, params: Params) -> str:
    """The README's results section: the claims with their verdicts first, then the
    baselines, then the paper-vs-ours table (claims.md, baselines.md, paper_vs_ours.md)."""
    where = params.report.publish_dir or str(out)

    def read(name: str) -> str:
        return (out / name).read_text(encoding="utf-8").rstrip() + "\n"

    return (
        f"Generated by notebook 07 on the `{params.profile}` profile (`make study`); tables, "
        f"figures and the deviations from the paper are in `{where}/`.\n\n"
        "### Claims of the paper: verdicts\n\n"
        "Top-1 differences in points between the checkpoints each claim names; ours is the "
        "mean over seeds of the paired (same-seed) differences with its 95% interval.\n\n"
        + read("claims.md")
        + "\n### Baselines\n\n"
        + read("baselines.md")
        + "\n### Paper vs ours\n\n"
        + read("paper_vs_ours.md")
    )


def update_readme(
    readme: Path, section: str, start_marker: str = README_START, end_marker: str = README_END
) -> Path:
    """Replace the text between two markers (the results section's by default); an error
    names the file if they are missing."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(
            f"{readme}: expected the markers {start_marker} and {end_marker} (in that order) "
            "around the section they enclose"
        )
    new = text[: start + len(start_marker)] + "\n" + section.rstrip() + "\n" + text[end:]
    return write_text_atomic(readme, new)


def run_report_stage(params: Params) -> dict[str, Any]:
    """Build, save and publish; returns what `mlimages report --json` prints."""
    params.write(params.stage_dir(STAGE) / "params.yaml")
    report = build(params)
    out = save(report, params)
    published = publish(params, out)
    return {
        "out": str(out),
        "published": [str(p) for p in published],
        "claims": _records(report["claims"]),
        "checkpoints": report["comparison"].replace({np.nan: None}).to_dict("records"),
        "summary": report["summary"],
    }
