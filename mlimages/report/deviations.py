"""How this reproduction departs from the paper's setup, and what the paper's run costs now.

Every deviation is computed from the resolved parameters and the runs (data size, target task,
resolution, depth, schedules, augmentation, hardware), so the list cannot drift from what was
run; the method parameters that differ from the `paper` profile (the authors' values) follow
it. The plans put the paper's run beside the full run on current GPUs and every profile.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import pandas as pd

from mlimages.config import layout
from mlimages.config.fingerprint import flatten
from mlimages.config.params import Params, find_profile, load_params
from mlimages.paper import facts
from mlimages.report.paper_comparison import read_json
from mlimages.report.text_tables import markdown_table
from mlimages.train import plan

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
    download = read_json(params.run_dir / layout.DOWNLOAD / layout.METRICS_FILE) or {}
    splits = download.get("splits", {})
    images = splits.get("train", {}).get("ok") or plan.profile_images(params)
    classes = (
        params.model.num_classes
        or params.data.num_classes
        or (read_json(params.run_dir / layout.EXPLORE / layout.METRICS_FILE) or {})
        .get("hierarchy", {})
        .get("classes")
        or (plan.mini_classes() if params.data.uses_miniature else "?")
    )
    p, m, s, f = params.pretrain, params.model, params.schedule, params.finetune
    blocks = list(m.blocks) if m.blocks else list(facts.DEPTHS[m.depth])
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
        ("data size", f"{facts.PAPER_IMAGES:,} images, {facts.PAPER_CLASSES:,} classes",
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
        ("pretraining length", f"{facts.PAPER_EPOCHS} epochs at a global batch of "
         f"{facts.PAPER_GLOBAL_BATCH:,} (the authors' script: {facts.PAPER_STEPS:,} steps)",
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
        ("hardware", f"{facts.PAPER_GPUS} GPUs, {facts.PAPER_HOURS:.0f} hours (TFplus)",
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

    Else the paper's."""
    flat = flatten(params.model_dump(mode="json"))
    keys = [k for k in flat if "bn" in k and "momentum" in k]
    if keys:
        return ", ".join(f"{flat[k]} ({k})" for k in keys)
    return f"{facts.BN_MOMENTUM}"


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
                facts.PAPER_IMAGES,
                facts.PAPER_EPOCHS,
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
