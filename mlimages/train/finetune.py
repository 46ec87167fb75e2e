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

Nothing here imports TensorFlow at module level: notebook 05 plots and tabulates in its
kernel while the training runs in a `mlimages finetune` subprocess.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlimages.config.params import CheckpointSetting, Params
from mlimages.core import fingerprint
from mlimages.core.atomic import write_json_atomic, write_text_atomic
from mlimages.paper.facts import PAPER_SIZES, paper_accuracy
from mlimages.train.launch import follow as follow_run
from mlimages.train.launch import start, verb_command

if TYPE_CHECKING:
    from mlimages.input.shard_index import SplitIndex

STAGE = "finetune"
SUBSETS = "subsets"  # finetune/subsets/<split>-k<K>/: the K-examples-a-class training splits
MODEL_FILE = "model.keras"  # = mlimages.train.engine.MODEL_FILE, without importing TensorFlow
RESULT_COLUMNS = (
    "ckpt", "setting", "seed", "model", "img_size", "top1", "top5", "train_top1",
    "param_count", "train_sizes", "steps",
)  # fmt: skip
FROZEN_PREFIXES = ("init.", "stages_0_", "stages_1_")  # the authors' FixBlock2 trains the rest


# --- the settings as data ------------------------------------------------------------------


def setting(params: Params, ckpt: int | None = None) -> CheckpointSetting:
    """The checkpoint setting `ckpt` (default: `finetune.ckpt`)."""
    ckpt = params.finetune.ckpt if ckpt is None else ckpt
    for candidate in params.finetune.checkpoints:
        if candidate.ckpt == ckpt:
            return candidate
    known = [c.ckpt for c in params.finetune.checkpoints]
    raise ValueError(f"finetune ckpt {ckpt}: expected one of the checkpoints {known}")


def size_schedule(params: Params, ckpt: int | None = None) -> list[tuple[int, int, int]]:
    """`(first step, end step, image size)` segments covering steps 0..`finetune.steps`.

    base_then_large switches at `steps * (1 - large_fraction)`: with the recipe's defaults
    (x0.1 every 150k of 600k steps) 0.25 puts the large size exactly on the last
    learning-rate stage, the "late epochs" of the paper; a profile whose last stage rate
    no longer learns puts the switch on an earlier decay (`decay_at`).
    """
    f = params.finetune
    kind = setting(params, ckpt).train_sizes
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


def eval_sizes(params: Params) -> list[int]:
    """Every run is evaluated at both sizes (the paper's @224 and @299 columns)."""
    f = params.finetune
    return sorted({f.base_size, f.large_size})


def model_name(params: Params) -> str:
    """`resnet101`, or `resnet_1_1_1_1_w16` for the reduced variants of the mini study."""
    m = params.model
    name = f"resnet{m.depth}" if m.blocks is None else "resnet_" + "_".join(map(str, m.blocks))
    return name if m.width == 64 else f"{name}_w{m.width}"


def ckpt_dir(params: Params, ckpt: int) -> Path:
    return params.stage_dir(STAGE) / f"ckpt{ckpt}"


def seed_dir(params: Params, ckpt: int, seed: int) -> Path:
    return ckpt_dir(params, ckpt) / f"seed{seed}"


def init_source(params: Params) -> Path:
    """Where pretrained weights come from: `finetune.init_checkpoint`, else the profile's
    pretraining run (`runs/<profile>/pretrain/model.keras`)."""
    if params.finetune.init_checkpoint:
        return params.resolve_path(params.finetune.init_checkpoint)
    return params.run_dir / "pretrain" / MODEL_FILE


# --- model and initialisation ----------------------------------------------------------------


def build_model(params: Params, num_classes: int, chosen: CheckpointSetting):
    """The profile's ResNet with a new `num_classes` head, any image size (the size schedule
    changes it), and the setting's frozen layers: frozen layers get `trainable = False`, so
    the engine does not train them and Keras 3 runs their BN in inference mode (statistics
    frozen too)."""
    from mlimages.paper.model import LOGITS_LAYER, model_from_params

    # The target task's head, whatever class count the profile gives the pretraining model.
    model = model_from_params(params.model.model_copy(update={"num_classes": None}), num_classes)
    for layer in model.layers:
        if chosen.linear_probe:
            layer.trainable = layer.name == LOGITS_LAYER
        elif chosen.pretrained and params.finetune.freeze_stages:
            layer.trainable = not layer.name.startswith(FROZEN_PREFIXES)
    return model


def load_pretrained(model, source: str | Path):
    """Copy pretrained weights into `model` by the authors' variable names, logits skipped.

    `source` is a `.keras` file (our pretraining run) or an authors'-format TF1 checkpoint
    (prefix or folder). A model variable the source lacks, or one of another shape, stops
    with its name; names the source has and the model lacks are reported as `unused`.
    Returns `mlimages.paper.model.LoadReport`.
    """
    from mlimages.paper.model import load_keras_weights
    from mlimages.paper.tf1_checkpoint import load_tf1_checkpoint

    load = load_keras_weights if Path(source).suffix == ".keras" else load_tf1_checkpoint
    return load(model, source, skip_logits=True)


def _initializer(source: Path, out: Path):
    """The engine's `initialize`: load on a fresh start, and keep the report in `init.json`."""

    def initialize(model) -> dict[str, Any]:
        report = load_pretrained(model, source)
        summary = {
            "source": str(source),
            "loaded": len(report.loaded),
            "skipped": report.skipped,
            "unused": report.unused,
        }
        write_json_atomic(out / "init.json", summary)
        return summary

    return initialize


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


def val_arrays(params: Params, val_index, num_classes: int) -> dict[int, tuple[Any, Any]]:
    """A split's images (eval preprocessing) at every evaluation size, decoded once a process:
    the task's validation images, or its training images for the training accuracy."""
    import numpy as np

    from mlimages.input import pipeline

    arrays = {}
    for size in eval_sizes(params):
        images, labels = [], []
        for x, y in pipeline.eval_dataset(
            val_index, size, params.finetune.eval_batch, num_classes, mode=pipeline.FINETUNE,
            crop_fraction=params.pipeline.eval_crop_fraction,
        ):  # fmt: skip
            images.append(x.numpy())
            labels.append(y.numpy())
        arrays[size] = (np.concatenate(images), np.concatenate(labels))
    return arrays


def precise_bn(model, batches, frozen_too: bool = False) -> int:
    """Set every trainable BN layer's moving statistics to the mean of its batch statistics
    over `batches` (images only), in training mode: what the moving averages of a long run
    converge to (Wu & Johnson 2021, "precise BN"), without the run. Frozen BN layers (the
    linear probes, FixBlock2) keep theirs unless `frozen_too`. Returns the layers set."""
    import keras
    import numpy as np

    layers = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization) and (layer.trainable or frozen_too)
    ]
    if not layers:
        return 0
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    sums = [None] * len(layers)
    count = 0
    for images in batches:
        outputs = probe(images, training=True)
        for i, x in enumerate(outputs):
            x = np.asarray(x, dtype=np.float64)
            axes = tuple(range(x.ndim - 1))
            stats = np.stack([x.mean(axes), x.var(axes)])
            sums[i] = stats if sums[i] is None else sums[i] + stats
        count += 1
    if count == 0:
        raise ValueError("precise BN: no batches; expected at least one training batch")
    for layer, total in zip(layers, sums, strict=True):
        mean, var = total / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(var.astype(np.float32))
    return len(layers)


def top_k(model, images, labels, batch: int) -> tuple[float, float]:
    """Top-1 and top-5 accuracy in percent (top-5 is top-C when there are fewer classes)."""
    import numpy as np

    from mlimages.core.metrics import top_k_accuracy

    scores = np.concatenate(
        [
            np.asarray(model(images[i : i + batch], training=False), dtype=np.float32)
            for i in range(0, len(images), batch)
        ]
    )
    return 100 * top_k_accuracy(scores, labels, 1), 100 * top_k_accuracy(scores, labels, 5)


def task_for(
    params: Params,
    ckpt: int,
    seed: int,
    arrays: dict[int, tuple[Any, Any]] | None = None,
    train_arrays: dict[int, tuple[Any, Any]] | None = None,
):
    """The fine-tuning `TrainTask` of one checkpoint setting and seed; `arrays` and
    `train_arrays` (validation and training images by size) feed the periodic evaluation."""
    from mlimages.input import pipeline
    from mlimages.train.distributed import cluster_from_environment
    from mlimages.train.engine import TrainTask

    f = params.finetune
    chosen = setting(params, ckpt)
    out = seed_dir(params, ckpt, seed)
    train_index = training_index(params)
    num_classes = train_index.num_classes
    workers = cluster_from_environment().count
    steps_per_epoch = train_index.steps_per_epoch(f.global_batch, workers)
    if steps_per_epoch < 1 and f.examples_per_class is None:
        raise ValueError(
            f"finetune.global_batch = {f.global_batch} exceeds the {train_index.records} "
            f"{f.splits[0]} records; expected a smaller batch or more data"
        )
    if min(train_index.worker_records(workers)) < 1:  # a K-subset repeats within a batch
        raise ValueError(
            f"{train_index.root}: {train_index.records} records for {workers} workers; expected "
            "at least one a worker"
        )
    initialize = None
    if chosen.pretrained:
        source = init_source(params)
        if source.suffix == ".keras" and not source.is_file():
            raise FileNotFoundError(
                f"{source}: no pretrained model; run the pretraining stage first (notebook 04, "
                f"`mlimages pretrain --params {params.profile}`) or set finetune.init_checkpoint"
            )
        initialize = _initializer(source, out)
    schedule = size_schedule(params, ckpt)

    def training_input(size: int, input_seed: int, ctx=None):
        """The profile's fine-tuning input at `size`: batches of (images, labels)."""
        return pipeline.train_dataset(
            train_index, size, f.global_batch, num_classes, mode=pipeline.FINETUNE,
            seed=input_seed, input_context=ctx, shuffle_buffer=params.pipeline.shuffle_buffer,
            cycle_length=params.pipeline.cycle_length,
            **pipeline.augmentation(params.pipeline, pipeline.FINETUNE),
        )  # fmt: skip

    def training_batches(size: int, count: int):
        """`count` fixed batches of the training input at `size` (their own seed), images only."""
        return (images for images, _ in training_input(size, seed + 7919).take(count))

    if chosen.linear_probe and not chosen.pretrained:

        def initialize(model) -> dict[str, Any]:
            # Random features: a random network has no BN statistics of its own (its 0/1
            # start would leave every activation unnormalised), so it gets the target's, as
            # precise BN computes them; the probe then trains the head on these features.
            layers = precise_bn(
                model, training_batches(schedule[0][2], max(f.precise_bn_batches, 1)), True
            )
            summary = {"source": "random initialisation", "bn_statistics_from_target": layers}
            write_json_atomic(out / "init.json", summary)
            return summary

    def dataset_fn(ctx, start_step: int):
        # The schedule from `start_step` on: a resumed run continues at the size it stopped at.
        # A resumed run reshuffles from a new seed instead of replaying its first batches.
        parts = []
        for first, end, size in schedule:
            if end <= start_step:
                continue
            part = training_input(size, seed + start_step + first, ctx)
            parts.append(part.take(end - max(first, start_step)) if end < f.steps else part)
        dataset = parts[0]
        for part in parts[1:]:
            dataset = dataset.concatenate(part)  # the image shape relaxes to [B, None, None, 3]
        return dataset

    eval_fn = None
    if f.eval_every and arrays:

        def eval_fn(model) -> dict[str, float]:
            found = {
                f"val_top1@{size}": top_k(model, x, y, f.eval_batch)[0]
                for size, (x, y) in arrays.items()
            }
            for size, (x, y) in (train_arrays or {}).items():
                found[f"train_top1@{size}"] = top_k(model, x, y, f.eval_batch)[0]
            return found

    finalize = None
    if f.precise_bn_batches:

        def finalize(model) -> None:
            # The training input at the size the run ends at: fixed batches.
            precise_bn(model, training_batches(schedule[-1][2], f.precise_bn_batches))

    return TrainTask(
        out=out,
        build_model=lambda: build_model(params, num_classes, chosen),
        dataset_fn=dataset_fn,
        loss_kind="softmax",
        num_classes=num_classes,
        steps=f.steps,
        global_batch=f.global_batch,
        learning_rate=lr_schedule(params),
        momentum=f.momentum,
        weight_decay=f.weight_decay,
        bn_weight_decay=f.bn_weight_decay,
        checkpoint_every=f.checkpoint_every,
        log_every=f.log_every,
        eval_every=f.eval_every,
        eval_fn=eval_fn,
        initialize=initialize,
        finalize=finalize,
        progress=f.progress,
        epoch_steps=steps_per_epoch,
    )


# --- the stage -------------------------------------------------------------------------------


def _finished(out: Path, steps: int) -> bool:
    """A complete run of `steps` steps: its model is saved and its metrics say so."""
    metrics = out / "metrics.json"
    if not (out / MODEL_FILE).is_file() or not metrics.is_file():
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
    chosen = setting(params, ckpt)
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
    model = keras.models.load_model(out / MODEL_FILE)
    counts = summary(model)
    params_m = (counts["params"] + counts["non_trainable_params"]) / 1e6
    chosen = setting(params, ckpt)
    rows = []
    for size, (images, labels) in arrays.items():
        top1, top5 = top_k(model, images, labels, f.eval_batch)
        train_top1 = (
            round(top_k(model, *train_arrays[size], f.eval_batch)[0], 3)
            if train_arrays
            else math.nan
        )
        rows.append(
            {
                "ckpt": ckpt,
                "setting": chosen.setting,
                "seed": seed,
                "model": model_name(params),
                "img_size": size,
                "top1": round(top1, 3),
                "top5": round(top5, 3),
                "train_top1": train_top1,
                "param_count": round(params_m, 4),
                "train_sizes": train_sizes_label(size_schedule(params, ckpt)),
                "steps": f.steps,
            }
        )
    write_json_atomic(out / "eval.json", {"rows": rows})
    return rows


def run_finetune_stage(
    params: Params, ckpt: int | None = None, seeds: list[int] | None = None
) -> dict[str, Any]:
    """Fine-tune checkpoint `ckpt` once per seed in this process, evaluate every seed at both
    sizes, and write `results.csv`, `metrics.json` and `schedule.csv` for the checkpoint."""
    from mlimages.input import records
    from mlimages.train.distributed import cluster_from_environment, make_strategy

    ckpt = params.finetune.ckpt if ckpt is None else ckpt
    setting(params, ckpt)  # an unknown ckpt stops before any work
    seeds = list(params.finetune.seeds if seeds is None else seeds)
    out = ckpt_dir(params, ckpt)
    params.write(out / "params.yaml")
    write_schedule(params, ckpt)
    val_index = records.split_index(params.run_dir, params.finetune.splits[1])
    arrays = val_arrays(params, val_index, val_index.num_classes)
    train_index = training_index(params)
    train_arrays = val_arrays(params, train_index, train_index.num_classes)
    strategy = make_strategy(params.finetune.strategy)
    for seed in seeds:
        run_seed(params, ckpt, seed, strategy, arrays, train_arrays)
    if not cluster_from_environment().is_chief:
        return {"ckpt": ckpt, "seeds": seeds}
    return collect(params, ckpt)


def lr_schedule(params: Params):
    """The authors' fine-tuning staircase (`recipe.finetune_schedule`) of the profile, its
    rates scaled linearly to the global batch."""
    from mlimages.paper.recipe import finetune_schedule, lr_scale

    f = params.finetune
    scale = lr_scale(f.global_batch, f.reference_batch)
    return finetune_schedule(
        f.steps, f.lr, tuple(f.decay_at), f.decay_factor, f.warmup_fraction, scale
    )


def write_schedule(params: Params, ckpt: int) -> Path:
    """`schedule.csv`: image size and learning rate, piecewise constant over the steps."""
    f = params.finetune
    lr = lr_schedule(params)
    sizes = size_schedule(params, ckpt)
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
        path = seed_dir(params, ckpt, seed) / "eval.json"
        if path.is_file():
            rows += json.loads(path.read_text())["rows"]
    lines = [",".join(RESULT_COLUMNS)]
    lines += [",".join(_csv_field(row[c]) for c in RESULT_COLUMNS) for row in rows]
    write_text_atomic(out / "results.csv", "\n".join(lines) + "\n")
    chosen = setting(params, ckpt)
    schedule = size_schedule(params, ckpt)
    metrics = {
        "ckpt": ckpt,
        "setting": chosen.setting,
        "model": model_name(params),
        "train_sizes": train_sizes_label(schedule),
        "schedule": [{"first_step": a, "end_step": b, "image_size": s} for a, b, s in schedule],
        "steps": params.finetune.steps,
        "seeds": sorted({row["seed"] for row in rows}),
        "sizes": {str(size): _spread(rows, size) for size in eval_sizes(params)},
        "paper": paper_numbers(ckpt),
        "rows": rows,
    }
    write_json_atomic(out / "metrics.json", metrics)
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


# --- tables and figures (notebook 05) --------------------------------------------------------


def read_schedule(params: Params, ckpt: int):
    import pandas as pd

    return pd.read_csv(ckpt_dir(params, ckpt) / "schedule.csv")


def read_results(params: Params, ckpt: int):
    import pandas as pd

    return pd.read_csv(ckpt_dir(params, ckpt) / "results.csv")


def plot_schedule(params: Params, ckpt: int):
    """Image size and learning rate against the step: the resolution schedule of `ckpt`."""
    import matplotlib.pyplot as plt

    table = read_schedule(params, ckpt)
    steps = [*table["first_step"], table["end_step"].iloc[-1]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3))
    for ax, column, title in (
        (axes[0], "image_size", "training image size (px)"),
        (axes[1], "learning_rate", "learning rate"),
    ):
        values = [*table[column], table[column].iloc[-1]]
        ax.step(steps, values, where="post")
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[1].set_yscale("log")
    sizes = sorted({params.finetune.base_size, params.finetune.large_size})
    axes[0].set_yticks(sizes)
    axes[0].set_ylim(min(sizes) - 4, max(sizes) + 4)
    fig.tight_layout()
    return fig


def plot_curves(params: Params, ckpt: int):
    """Training loss and validation top-1 (both sizes) per seed, from each run's `log.jsonl`."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from mlimages.train.engine import read_log

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for seed in params.finetune.seeds:
        log = pd.DataFrame(read_log(seed_dir(params, ckpt, seed)))
        if log.empty:
            continue
        axes[0].plot(log["step"], log["loss"], label=f"seed {seed}")
        for column in (c for c in log.columns if c.startswith(("val_top1@", "train_top1@"))):
            points = log.dropna(subset=[column])
            style = "--" if column.startswith("train") else "-"
            axes[1].plot(
                points["step"], points[column], style, marker="o", label=f"seed {seed} {column}"
            )
    axes[0].set_title("training loss (softmax cross-entropy)")
    task = params.finetune.task
    axes[1].set_title(f"{task} top-1 (%): validation (solid), training (dashed)")
    for ax in axes:
        ax.set_xlabel("step")
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def paper_comparison(params: Params, ckpt: int):
    """Ours (mean ± std over seeds) next to the paper, base size beside 224 and large beside
    299."""
    import pandas as pd

    metrics = json.loads((ckpt_dir(params, ckpt) / "metrics.json").read_text())
    paper = metrics["paper"] or {}
    f = params.finetune
    rows = []
    for ours, theirs in ((f.base_size, PAPER_SIZES[0]), (f.large_size, PAPER_SIZES[1])):
        spread = metrics["sizes"][str(ours)]
        published = paper.get(str(theirs), {})
        rows.append(
            {
                "ckpt": ckpt,
                "setting": metrics["setting"],
                "eval size (ours / paper)": f"{ours} / {theirs}",
                "top-1 ours": _pm(spread["top1_mean"], spread["top1_std"]),
                "top-1 paper": published.get("top1"),
                "top-5 ours": _pm(spread["top5_mean"], spread["top5_std"]),
                "top-5 paper": published.get("top5"),
                "seeds": spread["n"],
            }
        )
    return pd.DataFrame(rows)


def _pm(mean: float | None, std: float | None) -> str:
    """`mean ± std`; null (or NaN, in files written before JSON became strict) is left out."""
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.1f}" + ("" if std is None or math.isnan(std) else f" ± {std:.1f}")
