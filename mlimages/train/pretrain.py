"""Pretraining stage: the paper's ResNet and multi-label loss on the profile's records.

`run_pretrain_stage` trains in this process under the strategy the environment asks for;
`launch` starts it as `python -m mlimages pretrain …` subprocesses (one a local worker), which
is how notebook 04 runs it: never inside the kernel, whose TensorFlow could not then be
reconfigured for a cluster. `task_from_params` resolves a profile into the plain arguments of
`build_task`; notebook 04's figures and table are in `mlimages.report.training`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlimages.config import fingerprint, layout
from mlimages.config.params import Params
from mlimages.config.sections import PipelineParams
from mlimages.config.training import LossParams, ModelParams, PretrainParams, ScheduleParams
from mlimages.core.atomic import write_json_atomic
from mlimages.train.launch import follow as follow_run
from mlimages.train.launch import start, verb_command

if TYPE_CHECKING:
    from mlimages.input.shard_index import SplitIndex
    from mlimages.train.engine import TrainTask

STAGE = layout.PRETRAIN
HELD_OUT_FILE = "held_out.json"  # what `pretrain.hold_out_novel` removed from the input


def build_model(model_params: ModelParams, num_classes: int, image_size: int):
    from mlimages.train import from_profile

    return from_profile.resnet(model_params, num_classes, image_size)


def held_out_classes(params: Params) -> list[int]:
    """Class indices pretraining must not see (`pretrain.hold_out_novel`): the miniature's
    novel leaves in its dictionary; none otherwise."""
    if not params.pretrain.hold_out_novel:
        return []
    from mlimages.data.synthetic import ensure_miniature
    from mlimages.data.taxonomy import load_dictionary

    mini = ensure_miniature(params.synth, layout.miniature_dir(params.run_dir))
    taxonomy = load_dictionary(str(mini.dictionary))
    return sorted(taxonomy.index_of_wnid[w] for w in mini.info["novel_classes"])


def held_out_eval(
    index: SplitIndex,
    image_size: int,
    eval_images: int,
    num_classes: int,
    exclude: list[int] | None = None,
):
    """P/R@k on the first `eval_images` validation images, every `eval_every` steps; those
    labelled with an `exclude` class are skipped (the held-out novel leaves)."""
    import numpy as np

    from mlimages.input import pipeline
    from mlimages.train.engine import precision_recall_eval

    batches = pipeline.eval_dataset(
        index, image_size, 256, num_classes, exclude_classes=exclude
    ).unbatch()
    images, labels = [], []
    for image, label in batches.take(eval_images):
        images.append(image.numpy())
        labels.append(label.numpy())
    if not images:
        return None
    return precision_recall_eval(np.stack(images), np.stack(labels))


def task_from_params(params: Params, out: Path, workers: int | None = None) -> TrainTask:
    """The profile's pretraining `TrainTask`: its records, held-out classes and sections, for
    `build_task`. `workers`: the worker count when the environment does not say it (Horovod)."""
    from mlimages.input import records
    from mlimages.train.distributed import cluster_from_environment

    p = params.pretrain
    train_index = records.split_index(params.run_dir, "train")
    workers = workers or cluster_from_environment().count
    exclude = held_out_classes(params)
    steps_per_epoch = epoch_steps(p.global_batch, train_index, exclude, out, workers)
    val_index = records.split_index(params.run_dir, "val") if p.eval_every else None
    return build_task(
        out, train_index, val_index, exclude, steps_per_epoch, p, params.model, params.loss,
        params.schedule, params.pipeline, params.seed,
    )  # fmt: skip


def epoch_steps(
    global_batch: int, index: SplitIndex, exclude: list[int], out: Path, workers: int
) -> int:
    """Steps in one pass over the training records (those left once `exclude` is dropped);
    stops where the records cannot fill a batch."""
    steps_per_epoch = index.steps_per_epoch(global_batch, workers)
    if exclude:
        steps_per_epoch = _held_out_epoch(global_batch, index, exclude, out, workers)
    if steps_per_epoch < 1:
        raise ValueError(
            f"pretrain.global_batch = {global_batch} exceeds the {index.records} training "
            f"records ({workers} workers{', novel classes held out' if exclude else ''}); "
            "expected a smaller batch or more data"
        )
    return steps_per_epoch


def build_task(
    out: Path,
    train_index: SplitIndex,
    val_index: SplitIndex | None,
    exclude: list[int],
    steps_per_epoch: int,
    p: PretrainParams,
    model_params: ModelParams,
    loss: LossParams,
    schedule: ScheduleParams,
    pipeline_params: PipelineParams,
    seed: int,
) -> TrainTask:
    """The pretraining `TrainTask` on `train_index` (P/R@k on `val_index` when given): the
    model, the loss options and the authors' schedule, without the `exclude` classes."""
    from mlimages.input import pipeline
    from mlimages.train import from_profile
    from mlimages.train.engine import TrainTask

    num_classes = train_index.num_classes
    eval_fn = None
    if val_index is not None:
        eval_fn = held_out_eval(val_index, p.image_size, p.eval_images, num_classes, exclude)

    def dataset_fn(ctx, start_step: int):
        # A resumed run reshuffles from a new seed instead of replaying its first batches.
        return pipeline.train_dataset(
            train_index, p.image_size, p.global_batch, num_classes,
            mode=pipeline.PRETRAIN, seed=seed + start_step, input_context=ctx,
            shuffle_buffer=pipeline_params.shuffle_buffer,
            **pipeline.augmentation(pipeline_params, pipeline.PRETRAIN),
            cycle_length=pipeline_params.cycle_length, exclude_classes=exclude,
        )  # fmt: skip

    return TrainTask(
        out=out,
        build_model=lambda: build_model(model_params, num_classes, p.image_size),
        dataset_fn=dataset_fn,
        loss_kind="multilabel",
        num_classes=num_classes,
        steps=p.steps,
        global_batch=p.global_batch,
        learning_rate=from_profile.pretrain_schedule(schedule, p.global_batch),
        momentum=schedule.momentum,
        weight_decay=loss.weight_decay,
        checkpoint_every=p.checkpoint_every,
        log_every=p.log_every,
        eval_every=p.eval_every,
        eval_fn=eval_fn,
        loss_options=loss.model_dump(exclude={"weight_decay"}),
        progress=p.progress,
        max_seconds=p.max_seconds,
        epoch_steps=steps_per_epoch,
    )


def _held_out_epoch(
    global_batch: int, index: SplitIndex, exclude: list[int], out: Path, workers: int
) -> int:
    """Count the training records left once `exclude` is dropped, record the counts in
    `held_out.json` (and on stderr), and return the full batches every worker can take."""
    import sys

    from mlimages.input import record_reader

    kept = record_reader.records_without(index, exclude)
    remaining = sum(kept)
    write_json_atomic(
        out / HELD_OUT_FILE,
        {
            "novel_classes": exclude,
            "train_images": index.records,
            "remaining": remaining,
            "dropped": index.records - remaining,
        },
    )
    print(
        f"pretrain: novel classes held out: {remaining} of {index.records} training images remain",
        file=sys.stderr,
    )
    index.steps_per_epoch(global_batch, workers)  # the batch must split
    per_worker = global_batch // workers
    return min(sum(kept[i::workers]) for i in range(workers)) // per_worker


# Pretraining settings that change no weight: a run that differs only in them is kept. The
# step count is one: the schedule is in steps, so a longer run resumes a shorter one (and a
# run already beyond the steps asked for starts afresh, `run_pretrain_stage`).
_NOT_IN_THE_WEIGHTS = {
    "steps", "checkpoint_every", "log_every", "eval_every", "eval_images", "progress",
    "max_seconds",
}  # fmt: skip


def _latest_checkpoint_step(out: Path) -> int:
    """The step of the newest checkpoint in `out/ckpt` (0 when there is none)."""
    steps = [int(p.stem.split("-")[1]) for p in (out / layout.CHECKPOINTS_DIR).glob("ckpt-*.index")]
    return max(steps, default=0)


def run_values(params: Params) -> dict[str, Any]:
    """What the pretrained weights depend on (the run's `fingerprint.json`)."""
    from mlimages.input import records

    return {
        "model": params.model.model_dump(mode="json"),
        "loss": params.loss.in_effect(),  # ignored keys left out
        "schedule": params.schedule.model_dump(mode="json"),
        "pretrain": params.pretrain.model_dump(mode="json", exclude=_NOT_IN_THE_WEIGHTS),
        "pipeline": params.pipeline.model_dump(mode="json", exclude=fingerprint.DISPLAY_ONLY),
        "seed": params.seed,
        "records": records.split_index(params.run_dir, "train").fingerprint,
    }


def _horovod_rank() -> int:
    """This process's Horovod rank from horovodrun's environment (0 when not set)."""
    import os

    from mlimages.train.horovod_backend import RANK_ENV

    return int(os.environ.get(RANK_ENV, "0"))


def run_pretrain_stage(params: Params, out: Path | None = None) -> dict[str, Any]:
    """Train in this process (one worker of a cluster, or alone)."""
    from mlimages.train.distributed import cluster_from_environment, make_strategy
    from mlimages.train.engine import configure_determinism, run

    out = out or params.stage_dir(STAGE)
    params.write(out / layout.PARAMS_FILE)
    worker = cluster_from_environment()
    if worker.is_chief and (params.pretrain.backend != "horovod" or _horovod_rank() == 0):
        # One process decides whether the folder's run is this one (workers share it).
        fingerprint.prepare(out, run_values(params), "pretrain")
        beyond = _latest_checkpoint_step(out)
        if beyond > params.pretrain.steps:  # the schedule is in steps: longer runs only resume
            fingerprint.clear(out, "pretrain", f"its checkpoint is at step {beyond}, beyond "
                              f"pretrain.steps = {params.pretrain.steps}")  # fmt: skip
    configure_determinism(params.seed)
    if params.pretrain.backend == "horovod":
        from mlimages.train import horovod_backend

        hvd = horovod_backend.init()  # Horovod: horovodrun's processes are the workers
        return run(task_from_params(params, out, hvd.size()), make_strategy("default"), hvd)
    strategy = make_strategy(params.pretrain.strategy)
    return run(task_from_params(params, out), strategy)


def command(profile: str | Path, overrides: dict[str, Any], out: Path, workers: int) -> list[str]:
    """The `mlimages pretrain` arguments that reproduce a resolved notebook or CLI call."""
    return verb_command(STAGE, profile, overrides, "--out", str(out), "--workers", str(workers))


def launch(
    profile: str | Path, overrides: dict[str, Any], out: Path, workers: int
) -> subprocess.Popen:
    """Start pretraining in a subprocess; the caller follows `out/log.jsonl`."""
    return start(command(profile, overrides, out, workers), out)


def follow(
    process: subprocess.Popen, out: Path, total_steps: int, progress: bool | None = None
) -> dict:
    """A progress bar from the run's log until it ends; its JSON result."""
    from mlimages.train.engine import last_logged_step

    return follow_run(process, out, total_steps, lambda: last_logged_step(out), STAGE, progress)
