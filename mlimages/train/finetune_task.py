"""The fine-tuning `TrainTask` and its parts, on plain arguments (sections, values, records).

The network with a new head and the setting's frozen layers, the pretrained weights copied in
by name, the training input whose image size follows the size schedule from the step a run
starts at, the periodic top-1 on decoded images, and precise BN before the model is saved.
`mlimages.train.finetune` resolves a profile into these arguments. Nothing here imports
TensorFlow at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlimages.config import layout
from mlimages.config.sections import PipelineParams
from mlimages.config.training import CheckpointSetting, FinetuneParams, ModelParams
from mlimages.core.atomic import write_json_atomic

if TYPE_CHECKING:
    from mlimages.input.shard_index import SplitIndex
    from mlimages.train.engine import TrainTask

FROZEN_PREFIXES = ("init.", "stages_0_", "stages_1_")  # the authors' FixBlock2 trains the rest


# --- model and initialisation ----------------------------------------------------------------


def build_model(
    model_params: ModelParams, num_classes: int, chosen: CheckpointSetting, freeze_stages: bool
):
    """The profile's ResNet with a new `num_classes` head, any image size (the size schedule
    changes it), and the setting's frozen layers (`freeze_stages`: FixBlock2 on a pretrained
    start): frozen layers get `trainable = False`, so the engine does not train them and
    Keras 3 runs their BN in inference mode (statistics frozen too)."""
    from mlimages.paper.model import LOGITS_LAYER
    from mlimages.train import from_profile

    # The target task's head, whatever class count the profile gives the pretraining model.
    model = from_profile.resnet(model_params.model_copy(update={"num_classes": None}), num_classes)
    for layer in model.layers:
        if chosen.linear_probe:
            layer.trainable = layer.name == LOGITS_LAYER
        elif chosen.pretrained and freeze_stages:
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
        write_json_atomic(out / layout.INIT_FILE, summary)
        return summary

    return initialize


# --- evaluation images, precise BN, accuracy ------------------------------------------------


def val_arrays(
    index: SplitIndex, sizes: list[int], batch: int, crop_fraction: float
) -> dict[int, tuple[Any, Any]]:
    """A split's images (eval preprocessing) at every size of `sizes`, decoded once a process:
    the task's validation images, or its training images for the training accuracy."""
    import numpy as np

    from mlimages.input import pipeline

    arrays = {}
    for size in sizes:
        images, labels = [], []
        for x, y in pipeline.eval_dataset(
            index, size, batch, index.num_classes, mode=pipeline.FINETUNE,
            crop_fraction=crop_fraction,
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


# --- the training task -----------------------------------------------------------------------


def lr_schedule(f: FinetuneParams):
    """The authors' fine-tuning staircase (`recipe.finetune_schedule`) of the section, its
    rates scaled linearly to the global batch."""
    from mlimages.paper.recipe import finetune_schedule, lr_scale

    scale = lr_scale(f.global_batch, f.reference_batch)
    return finetune_schedule(
        f.steps, f.lr, tuple(f.decay_at), f.decay_factor, f.warmup_fraction, scale
    )


def epoch_steps(f: FinetuneParams, train_index: SplitIndex, workers: int) -> int:
    """Steps in one pass over the training records; stops where a batch cannot be formed
    (a K-subset may be smaller than a batch: it repeats within one)."""
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
    return steps_per_epoch


def build_task(
    f: FinetuneParams,
    chosen: CheckpointSetting,
    model_params: ModelParams,
    pipeline_params: PipelineParams,
    train_index: SplitIndex,
    out: Path,
    seed: int,
    *,
    source: Path | None,
    schedule: list[tuple[int, int, int]],
    steps_per_epoch: int,
    arrays: dict[int, tuple[Any, Any]] | None = None,
    train_arrays: dict[int, tuple[Any, Any]] | None = None,
) -> TrainTask:
    """The fine-tuning `TrainTask` of one checkpoint setting and seed, written to `out`:
    weights from `source` (None: a fresh network), image sizes by `schedule`; `arrays` and
    `train_arrays` (validation and training images by size) feed the periodic evaluation."""
    from mlimages.input import pipeline
    from mlimages.train.engine import TrainTask

    num_classes = train_index.num_classes
    initialize = None if source is None else _initializer(source, out)

    def training_input(size: int, input_seed: int, ctx=None):
        """The profile's fine-tuning input at `size`: batches of (images, labels)."""
        return pipeline.train_dataset(
            train_index, size, f.global_batch, num_classes, mode=pipeline.FINETUNE,
            seed=input_seed, input_context=ctx, shuffle_buffer=pipeline_params.shuffle_buffer,
            cycle_length=pipeline_params.cycle_length,
            **pipeline.augmentation(pipeline_params, pipeline.FINETUNE),
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
            write_json_atomic(out / layout.INIT_FILE, summary)
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
        build_model=lambda: build_model(model_params, num_classes, chosen, f.freeze_stages),
        dataset_fn=dataset_fn,
        loss_kind="softmax",
        num_classes=num_classes,
        steps=f.steps,
        global_batch=f.global_batch,
        learning_rate=lr_schedule(f),
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
