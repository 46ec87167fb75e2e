"""Fine-tuning stage: checkpoints 1..6 on the single-label target task (the paper's table,
our linear probe and its random-feature baseline).

Each checkpoint setting (`params.finetune.checkpoints`) says where the weights start (from
scratch, or the pretraining run / an authors' TF1 checkpoint by name, logits skipped), at
which size the images are (base, large, or base then large in the late steps) and what
trains (everything, or only a new logits layer: the linear probe). The loop is the
pretraining engine's (`mlimages.train.engine`) with softmax cross-entropy; the size schedule lives
in the `dataset_fn`, which is built from the step a run starts at, so a resumed fine-tune
continues its schedule where it stopped. `finetune.task` picks the single-label task (the
target's, or the miniature's novel classes) and `finetune.examples_per_class` trains on K
images a class of it (the data-efficiency runs); evaluation is always on the task's whole
validation split. Results follow the contract that notebooks 06 and 07 read:
`finetune/ckpt<N>/seed<S>/` is a training run folder, `finetune/ckpt<N>/results.csv` has one
row per (seed, evaluation size), `finetune/ckpt<N>/metrics.json` the summary.

This module resolves a profile (`Params`) into the plain arguments of
`mlimages.train.finetune_task`, which builds the network and the `TrainTask`; notebook 05's
figures and tables are in `mlimages.report.training`. Nothing here imports TensorFlow at module
level: notebook 05 reads the run's files in its kernel while the training runs in a `mlimages
finetune` subprocess.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlimages.config import fingerprint, layout
from mlimages.config.params import Params
from mlimages.config.training import CheckpointSetting, FinetuneParams
from mlimages.core.atomic import write_json_atomic, write_text_atomic
from mlimages.paper.facts import PAPER_SIZES, model_name, paper_accuracy
from mlimages.train import finetune_task
from mlimages.train.launch import follow as follow_run
from mlimages.train.launch import start, verb_command

if TYPE_CHECKING:
    from mlimages.input.shard_index import SplitIndex

STAGE = layout.FINETUNE
SUBSETS = "subsets"  # finetune/subsets/<split>-k<K>/: the K-examples-a-class training splits
RESULT_COLUMNS = (
    "ckpt", "setting", "seed", "model", "img_size", "top1", "top5", "train_top1",
    "param_count", "train_sizes", "steps",
)  # fmt: skip


# --- the settings as data ------------------------------------------------------------------


def setting(f: FinetuneParams, ckpt: int | None = None) -> CheckpointSetting:
    """The checkpoint setting `ckpt` (default: `finetune.ckpt`)."""
    ckpt = f.ckpt if ckpt is None else ckpt
    for candidate in f.checkpoints:
        if candidate.ckpt == ckpt:
            return candidate
    known = [c.ckpt for c in f.checkpoints]
    raise ValueError(f"finetune ckpt {ckpt}: expected one of the checkpoints {known}")


def size_schedule(f: FinetuneParams, ckpt: int | None = None) -> list[tuple[int, int, int]]:
    """`(first step, end step, image size)` segments covering steps 0..`finetune.steps`.

    base_then_large switches at `steps * (1 - large_fraction)`: with the recipe's defaults
    (x0.1 every 150k of 600k steps) 0.25 puts the large size exactly on the last
    learning-rate stage, the "late epochs" of the paper; a profile whose last stage rate
    no longer learns puts the switch on an earlier decay (`decay_at`).
    """
    kind = setting(f, ckpt).train_sizes
    if kind == "base":
        return [(0, f.steps, f.base_size)]
    if kind == "large":
        return [(0, f.steps, f.large_size)]
    switch = min(max(round(f.steps * (1 - f.large_fraction)), 1), f.steps)
    segments = [(0, switch, f.base_size), (switch, f.steps, f.large_size)]
    return [s for s in segments if s[1] > s[0]]


def size_at(schedule: list[tuple[int, int, int]], step: int) -> int:
    """The image size of the batch that trains step `step` (0-based)."""
    for first, end, size in schedule:
        if first <= step < end:
            return size
    return schedule[-1][2]


def train_sizes_label(schedule: list[tuple[int, int, int]]) -> str:
    """`36` or `36->48`: the sizes a run trains at, in order."""
    return "->".join(str(size) for _, _, size in schedule)


def eval_sizes(f: FinetuneParams) -> list[int]:
    """Every run is evaluated at both sizes (the paper's @224 and @299 columns)."""
    return sorted({f.base_size, f.large_size})


def ckpt_dir(params: Params, ckpt: int) -> Path:
    return params.stage_dir(STAGE) / layout.ckpt_folder(ckpt)


def seed_dir(params: Params, ckpt: int, seed: int) -> Path:
    return ckpt_dir(params, ckpt) / layout.seed_folder(seed)


def init_source(params: Params) -> Path:
    """Where pretrained weights come from: `finetune.init_checkpoint`, else the profile's
    pretraining run (`runs/<profile>/pretrain/model.keras`)."""
    if params.finetune.init_checkpoint:
        return params.resolve_path(params.finetune.init_checkpoint)
    return params.run_dir / layout.PRETRAIN / layout.MODEL_FILE


# --- the training task -----------------------------------------------------------------------


def training_index(params: Params) -> SplitIndex:
    """The records fine-tuning trains on: the task's training split, or with
    `finetune.examples_per_class` = K its first K images a class (`record_reader.class_subset`,
    written once into `finetune/subsets/` and shared by every seed and setting)."""
    from mlimages.input import record_reader, records

    train_split, _ = params.finetune.splits
    index = records.split_index(params.run_dir, train_split)
    k = params.finetune.examples_per_class
    if k is None:
        return index
    subset = params.stage_dir(STAGE) / SUBSETS / f"{train_split}-k{k}"
    return record_reader.class_subset(index, k, subset)


def task_for(
    params: Params,
    ckpt: int,
    seed: int,
    arrays: dict[int, tuple[Any, Any]] | None = None,
    train_arrays: dict[int, tuple[Any, Any]] | None = None,
):
    """The fine-tuning `TrainTask` of one checkpoint setting and seed of the profile
    (`finetune_task.build_task`); `arrays` and `train_arrays` (validation and training images
    by size) feed the periodic evaluation."""
    from mlimages.train.distributed import cluster_from_environment

    f = params.finetune
    chosen = setting(f, ckpt)
    out = seed_dir(params, ckpt, seed)
    train_index = training_index(params)
    workers = cluster_from_environment().count
    steps_per_epoch = finetune_task.epoch_steps(f, train_index, workers)
    source = None
    if chosen.pretrained:
        source = init_source(params)
        if source.suffix == ".keras" and not source.is_file():
            raise FileNotFoundError(
                f"{source}: no pretrained model; run the pretraining stage first (notebook 04, "
                f"`mlimages pretrain --params {params.profile}`) or set finetune.init_checkpoint"
            )
    return finetune_task.build_task(
        f, chosen, params.model, params.pipeline, train_index, out, seed, source=source,
        schedule=size_schedule(f, ckpt), steps_per_epoch=steps_per_epoch, arrays=arrays,
        train_arrays=train_arrays,
    )  # fmt: skip


# --- the stage -------------------------------------------------------------------------------


def _finished(out: Path, steps: int) -> bool:
    """A complete run of `steps` steps: its model is saved and its metrics say so."""
    metrics = out / layout.METRICS_FILE
    if not (out / layout.MODEL_FILE).is_file() or not metrics.is_file():
        return False
    return json.loads(metrics.read_text()).get("steps", 0) >= steps


# Fine-tuning settings that change no weight: a run that differs only in them is kept.
_NOT_IN_THE_WEIGHTS = {
    "ckpt", "checkpoints", "seeds", "checkpoint_every", "log_every", "eval_every", "eval_batch",
    "progress",
}  # fmt: skip


def run_values(params: Params, ckpt: int, seed: int) -> dict[str, Any]:
    """What one seed's fine-tuned weights depend on (its `fingerprint.json`): the model, the
    recipe (the task and K among it), the setting, the augmentation, the seed, the training
    records (the K-subset's when K is set) and where the pretrained weights came from."""
    chosen = setting(params.finetune, ckpt)
    return {
        "model": params.model.model_dump(mode="json"),
        "finetune": params.finetune.model_dump(mode="json", exclude=_NOT_IN_THE_WEIGHTS),
        "setting": chosen.model_dump(mode="json"),
        "pipeline": params.pipeline.model_dump(mode="json", exclude=fingerprint.DISPLAY_ONLY),
        "seed": seed,
        "records": training_index(params).fingerprint,
        "init": fingerprint.file_digest(init_source(params)) if chosen.pretrained else None,
    }


def run_seed(
    params: Params, ckpt: int, seed: int, strategy, arrays, train_arrays=None
) -> list[dict[str, Any]]:
    """Train (or resume, or keep a finished run) and evaluate one seed; its result rows, with
    the training images' top-1 (eval preprocessing) beside the validation figures."""
    import keras

    from mlimages.paper.model import summary
    from mlimages.train.engine import configure_determinism, run

    f = params.finetune
    out = seed_dir(params, ckpt, seed)
    fingerprint.prepare(out, run_values(params, ckpt, seed), f"finetune ckpt {ckpt} seed {seed}")
    if not _finished(out, f.steps):
        configure_determinism(seed)
        run(task_for(params, ckpt, seed, arrays, train_arrays), strategy)
    model = keras.models.load_model(out / layout.MODEL_FILE)
    counts = summary(model)
    params_m = (counts["params"] + counts["non_trainable_params"]) / 1e6
    chosen = setting(f, ckpt)
    rows = []
    for size, (images, labels) in arrays.items():
        top1, top5 = finetune_task.top_k(model, images, labels, f.eval_batch)
        train_top1 = (
            round(finetune_task.top_k(model, *train_arrays[size], f.eval_batch)[0], 3)
            if train_arrays
            else math.nan
        )
        rows.append(
            {
                "ckpt": ckpt,
                "setting": chosen.setting,
                "seed": seed,
                "model": model_name(params.model.depth, params.model.blocks, params.model.width),
                "img_size": size,
                "top1": round(top1, 3),
                "top5": round(top5, 3),
                "train_top1": train_top1,
                "param_count": round(params_m, 4),
                "train_sizes": train_sizes_label(size_schedule(f, ckpt)),
                "steps": f.steps,
            }
        )
    write_json_atomic(out / layout.EVAL_FILE, {"rows": rows})
    return rows


def run_finetune_stage(
    params: Params, ckpt: int | None = None, seeds: list[int] | None = None
) -> dict[str, Any]:
    """Fine-tune checkpoint `ckpt` once per seed in this process, evaluate every seed at both
    sizes, and write `results.csv`, `metrics.json` and `schedule.csv` for the checkpoint."""
    from mlimages.input import records
    from mlimages.train.distributed import cluster_from_environment, make_strategy

    f = params.finetune
    ckpt = f.ckpt if ckpt is None else ckpt
    setting(f, ckpt)  # an unknown ckpt stops before any work
    seeds = list(f.seeds if seeds is None else seeds)
    out = ckpt_dir(params, ckpt)
    params.write(out / layout.PARAMS_FILE)
    write_schedule(params, ckpt)
    sizes, crop = eval_sizes(f), params.pipeline.eval_crop_fraction
    val_index = records.split_index(params.run_dir, f.splits[1])
    arrays = finetune_task.val_arrays(val_index, sizes, f.eval_batch, crop)
    train_index = training_index(params)
    train_arrays = finetune_task.val_arrays(train_index, sizes, f.eval_batch, crop)
    strategy = make_strategy(f.strategy)
    for seed in seeds:
        run_seed(params, ckpt, seed, strategy, arrays, train_arrays)
    if not cluster_from_environment().is_chief:
        return {"ckpt": ckpt, "seeds": seeds}
    return collect(params, ckpt)


def write_schedule(params: Params, ckpt: int) -> Path:
    """`schedule.csv`: image size and learning rate, piecewise constant over the steps."""
    f = params.finetune
    lr = finetune_task.lr_schedule(f)
    sizes = size_schedule(f, ckpt)
    cuts = sorted({0, f.steps, *(s[0] for s in sizes), *(b + 1 for b in lr.boundaries)})
    lines = ["first_step,end_step,image_size,learning_rate"]
    for first, end in zip(cuts, cuts[1:], strict=False):
        if first < f.steps:
            lines.append(f"{first},{end},{size_at(sizes, first)},{lr(first):.6g}")
    return write_text_atomic(ckpt_dir(params, ckpt) / "schedule.csv", "\n".join(lines) + "\n")


def collect(params: Params, ckpt: int) -> dict[str, Any]:
    """Gather the evaluated seeds of `finetune.seeds` into `results.csv` and `metrics.json`."""
    out = ckpt_dir(params, ckpt)
    rows = []
    for seed in params.finetune.seeds:
        path = seed_dir(params, ckpt, seed) / layout.EVAL_FILE
        if path.is_file():
            rows += json.loads(path.read_text())["rows"]
    lines = [",".join(RESULT_COLUMNS)]
    lines += [",".join(_csv_field(row[c]) for c in RESULT_COLUMNS) for row in rows]
    write_text_atomic(out / layout.RESULTS_FILE, "\n".join(lines) + "\n")
    chosen = setting(params.finetune, ckpt)
    schedule = size_schedule(params.finetune, ckpt)
    metrics = {
        "ckpt": ckpt,
        "setting": chosen.setting,
        "model": model_name(params.model.depth, params.model.blocks, params.model.width),
        "train_sizes": train_sizes_label(schedule),
        "schedule": [{"first_step": a, "end_step": b, "image_size": s} for a, b, s in schedule],
        "steps": params.finetune.steps,
        "seeds": sorted({row["seed"] for row in rows}),
        "sizes": {str(size): _spread(rows, size) for size in eval_sizes(params.finetune)},
        "paper": paper_numbers(ckpt),
        "rows": rows,
    }
    write_json_atomic(out / layout.METRICS_FILE, metrics)
    return metrics


def _csv_field(value: Any) -> str:
    text = "nan" if value is None else str(value)  # a null of eval.json: NaN, as before
    return f'"{text}"' if "," in text or '"' in text else text


def _spread(rows: list[dict[str, Any]], size: int) -> dict[str, float | int | str | None]:
    """Mean and sample standard deviation over seeds; None where undefined (no seed, or one
    seed for the std), with the reason in `std_note`, so that metrics.json stays strict JSON."""
    summary: dict[str, float | int | str | None] = {"n": 0}
    for metric in ("top1", "top5"):
        values = [row[metric] for row in rows if row["img_size"] == size]
        summary["n"] = len(values)
        mean = sum(values) / len(values) if values else None
        std = (
            math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            if mean is not None and len(values) > 1
            else None
        )
        summary[f"{metric}_mean"] = mean
        summary[f"{metric}_std"] = std
    if summary["n"] < 2:
        summary["std_note"] = f"undefined over {summary['n']} seed(s): needs two or more"
    return summary


def paper_numbers(ckpt: int) -> dict[str, dict[str, float]] | None:
    """The published top-1/top-5 of `ckpt` at 224 and 299 px (`mlimages.paper.facts`), or None
    (ckpt 5, the linear probe, is ours)."""
    found = {size: paper_accuracy(ckpt, size) for size in PAPER_SIZES}
    if not any(found.values()):
        return None
    return {str(s): {"top1": a.top1, "top5": a.top5} for s, a in found.items() if a is not None}


# --- subprocess launch (notebook 05) -------------------------------------------------------


def command(profile: str | Path, overrides: dict[str, Any], ckpt: int) -> list[str]:
    """The `mlimages finetune` arguments that reproduce a resolved notebook or CLI call."""
    return verb_command("finetune", profile, overrides, "--ckpt", str(ckpt))


def launch(
    profile: str | Path, overrides: dict[str, Any], ckpt: int, out: Path
) -> subprocess.Popen:
    """Start fine-tuning in a subprocess; its stderr goes to `out/launch.log`."""
    return start(command(profile, overrides, ckpt), out)


def follow(process: subprocess.Popen, params: Params, ckpt: int) -> dict[str, Any]:
    """A progress bar over every seed's log until the run ends; its JSON result."""
    from mlimages.train.engine import last_logged_step

    f = params.finetune

    def done() -> int:
        return sum(last_logged_step(seed_dir(params, ckpt, s)) for s in f.seeds)

    total = f.steps * len(f.seeds)
    return follow_run(process, ckpt_dir(params, ckpt), total, done, f"ckpt {ckpt}", f.progress)


# --- the checkpoint's tables read back (notebook 05) -----------------------------------------


def read_schedule(params: Params, ckpt: int):
    import pandas as pd

    return pd.read_csv(ckpt_dir(params, ckpt) / "schedule.csv")


def read_results(params: Params, ckpt: int):
    import pandas as pd

    return pd.read_csv(ckpt_dir(params, ckpt) / layout.RESULTS_FILE)
