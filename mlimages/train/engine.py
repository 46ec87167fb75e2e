"""One training engine for pretraining and fine-tuning: a custom loop under tf.distribute.

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` and its optimizers trip over
`merge_call` in custom loops, so the update is ours: the authors' TF1 `MomentumOptimizer` rule
(accum = m·accum + g; w -= lr·accum), applied in a `merge_call` after an explicit all-reduce.
The same loop serves the paper's multi-label loss and the loss ablation's variants
(pretraining, `LossParams.kind`) and softmax cross-entropy (fine-tuning). With Horovod (`hvd`)
the strategy is the default one and `hvd.allreduce` does the cross-worker sums instead.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mlimages.config import layout
from mlimages.config.layout import MODEL_FILE
from mlimages.core.atomic import atomic_path, dumps_json, write_json_atomic, write_text_atomic
from mlimages.core.progress import quiet, tqdm
from mlimages.train import horovod_backend
from mlimages.train.distributed import WorkerInfo, cluster_from_environment

LossKind = Literal["multilabel", "softmax"]


@dataclass
class TrainTask:
    """Everything the loop needs; built by `pretrain.build_task` or `finetune_task.build_task`."""

    out: Path
    build_model: Callable[[], Any]
    dataset_fn: Callable[[Any, int], Any]  # (tf.distribute.InputContext, start step) -> batches
    loss_kind: LossKind
    num_classes: int
    steps: int
    global_batch: int
    learning_rate: Callable[[int], float]
    momentum: float = 0.9
    weight_decay: float = 1e-4
    bn_weight_decay: float = 0.0
    checkpoint_every: int = 1000
    log_every: int = 10
    eval_every: int = 0
    eval_fn: Callable[[Any], dict[str, float]] | None = None
    initialize: Callable[[Any], dict] | None = None  # e.g. load pretrained weights when fresh
    finalize: Callable[[Any], None] | None = None  # e.g. precise BN, before the model is saved
    loss_options: dict[str, Any] = field(default_factory=dict)
    progress: bool | None = None
    keep_checkpoints: int = 3
    max_seconds: float | None = None  # stop early (after a checkpoint) when exceeded
    epoch_steps: int = 0  # steps in one pass over the training records, for reporting


def configure_determinism(seed: int) -> None:
    """Same seed, same run on CPU: seeded initialisers and deterministic kernels."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def run(task: TrainTask, strategy, hvd=None) -> dict[str, Any]:
    """Train to `task.steps`, resuming from the latest checkpoint in `task.out/ckpt`.

    `hvd`: the initialised `horovod.tensorflow` module for the Horovod backend, with the
    default `strategy`."""
    import tensorflow as tf

    from mlimages.paper import loss as paper_loss

    # Horovod: ranks come from hvd, not TF_CONFIG; one replica a rank.
    worker = cluster_from_environment() if hvd is None else horovod_backend.worker(hvd)
    task.out.mkdir(parents=True, exist_ok=True)
    replicas = strategy.num_replicas_in_sync if hvd is None else hvd.size()
    with strategy.scope():
        model = task.build_model()
        # Frozen layers (trainable = False) are simply not among the trainable variables.
        raw = [_tf_variable(v) for v in model.trainable_variables]
        slots = [tf.Variable(tf.zeros_like(v), trainable=False, name="momentum") for v in raw]
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        opts = task.loss_options
        loss_variant = opts.get("kind", "adaptive") if task.loss_kind == "multilabel" else None
        # Only the adaptive loss has streaks (the other kinds have no state to keep or log).
        per_replica = opts.get("counters", "global") == "replica"
        counters = (
            paper_loss.StreakCounters(task.num_classes, per_replica=per_replica)
            if loss_variant == "adaptive"
            else None
        )
    tracked = {"model": model, "slots": slots, "step": step}
    if counters is not None:
        tracked["counters"] = counters
    checkpoint = tf.train.Checkpoint(**tracked)
    # Every worker must take part in a save (it is collective); only the chief keeps its copy.
    ckpt_dir = (
        task.out / layout.CHECKPOINTS_DIR
        if worker.is_chief
        else Path(tempfile.mkdtemp(prefix="ckpt-"))
    )
    manager = tf.train.CheckpointManager(
        checkpoint, str(ckpt_dir), max_to_keep=task.keep_checkpoints
    )
    resumed_from = 0
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
        resumed_from = int(step.numpy())
    elif task.initialize is not None:
        task.initialize(model)
    if hvd is not None:
        # Horovod: only rank 0 holds checkpoints; every rank starts from its state and step
        # (per-replica streaks too: each rank resumes from rank 0's, as a tf.distribute restore
        # gives every replica the first one's).
        state = [*model.variables, *slots, step, *(counters.variables if counters else ())]
        hvd.broadcast_variables([_tf_variable(v) for v in state], root_rank=0)
        resumed_from = int(step.numpy())

    def apply_updates(strategy, grads, lr):
        # All-reduce the per-replica gradients (each already divided by the global batch).
        reduced = strategy.extended.batch_reduce_to(
            tf.distribute.ReduceOp.SUM, list(zip(grads, raw, strict=True))
        )
        for grad, var, slot in zip(reduced, raw, slots, strict=True):

            def momentum_update(v, g, slot=slot):
                slot.assign(slot * task.momentum + g)
                return v.assign_sub(lr * slot)

            strategy.extended.update(var, momentum_update, args=(grad,), group=False)

    def replica_step(images, targets, lr, global_step):
        ctx = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            if counters is not None:
                mask = paper_loss.positive_mask(targets, opts["mask_thres"])
                if per_replica:
                    # counters: replica: this replica's own batch only, neither all-reduced
                    # (tf.distribute) nor hvd.allreduce'd (Horovod: one replica a rank), and the
                    # streaks are ON_READ variables: the update below writes the local copy.
                    positive = mask
                else:
                    # The positive mask is the global batch's: all replicas must count the same.
                    local = tf.cast(mask, tf.float32)
                    if hvd is not None:  # Horovod: sum over ranks (the default context's is local)
                        local = hvd.allreduce(local, op=hvd.Sum)
                    positive = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local) > 0
                # Same (seed, step) on every replica, so the same classes are drawn everywhere.
                selected = paper_loss.negative_selection(
                    global_step, opts["select_seed"], task.num_classes, opts["neg_select"]
                )
                coefficients = paper_loss.class_coefficients(counters, positive, selected)
                data_loss = paper_loss.weighted_sigmoid_loss(
                    logits, targets, coefficients, task.global_batch, opts["pos_weight"]
                )
            elif loss_variant is not None:  # sigmoid, weighted, asl: no streaks
                data_loss = paper_loss.uniform_loss(
                    loss_variant, logits, targets, task.global_batch, opts
                )
            else:
                per_image = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    tf.cast(targets, tf.int64), logits
                )
                data_loss = tf.reduce_sum(per_image) / task.global_batch
            # Each replica adds 1/replicas of the decay, so the all-reduced sum holds it once.
            decay = paper_loss.weight_decay_loss(model, task.weight_decay, task.bn_weight_decay)
            total = data_loss + decay / replicas
        grads = tape.gradient(total, raw)
        if hvd is not None:  # Horovod: sum over ranks; the default strategy's reduce is identity
            grads = hvd.grouped_allreduce(grads, op=hvd.Sum)
        ctx.merge_call(apply_updates, args=(grads, lr))
        return data_loss, decay / replicas

    @tf.function
    def train_step(iterator, lr):
        images, targets = next(iterator)
        data_loss, decay = strategy.run(replica_step, args=(images, targets, lr, step))
        step.assign_add(1)
        totals = (
            strategy.reduce(tf.distribute.ReduceOp.SUM, data_loss, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.SUM, decay, axis=None),
        )
        if hvd is not None:  # Horovod: log the global batch's loss, as tf.distribute does
            totals = tuple(hvd.allreduce(t, op=hvd.Sum) for t in totals)
        return totals

    if hvd is None:
        dataset = strategy.distribute_datasets_from_function(
            lambda ctx: task.dataset_fn(ctx, resumed_from)
        )
    else:  # Horovod: each rank builds its own pipeline (its shards, its share of the batch)
        dataset = task.dataset_fn(horovod_backend.input_context(hvd), resumed_from)
    iterator = iter(dataset)
    log = _Log(task.out, worker, resumed_from)
    bar = tqdm(
        total=task.steps,
        initial=resumed_from,
        desc=f"train w{worker.index}",
        unit="step",
        disable=quiet(task.progress) or not worker.is_chief,
    )
    started = time.monotonic()
    window_start, window_steps = time.monotonic(), 0
    current = resumed_from
    final_loss = math.nan
    stopped_early = False
    while current < task.steps:
        lr = task.learning_rate(current)
        data_loss, decay = train_step(iterator, tf.constant(lr, tf.float32))
        current += 1
        window_steps += 1
        bar.update()
        final_loss = float(data_loss)
        if not math.isfinite(final_loss):
            raise FloatingPointError(
                f"loss is {final_loss} at step {current}; lower the learning rate"
            )
        if current % task.log_every == 0 or current == task.steps:
            elapsed = time.monotonic() - window_start
            record = {
                "step": current,
                "loss": final_loss,
                "weight_decay": float(decay),
                "learning_rate": lr,
                "images_per_sec": window_steps * task.global_batch / max(elapsed, 1e-9),
                "images_per_sec_per_worker": window_steps
                * task.global_batch
                / worker.count
                / max(elapsed, 1e-9),
            }
            if counters is not None:
                # Per-replica streaks: this worker's first replica's copy, a local read with no
                # collective, so no worker waits on another; global ones are the same everywhere.
                record.update(coefficient_summary(counters.positive_streak.numpy()))
            if (
                task.eval_fn is not None
                and task.eval_every
                and (current % task.eval_every == 0 or current == task.steps)
            ):
                record.update(task.eval_fn(model))
            log.write(record)
            bar.set_postfix(loss=f"{final_loss:.4f}", lr=f"{lr:.4g}")
            window_start, window_steps = time.monotonic(), 0
        out_of_time = task.max_seconds is not None and time.monotonic() - started > task.max_seconds
        if hvd is not None and task.max_seconds is not None:
            # Horovod: every rank stops at the same step, on rank 0's clock.
            out_of_time = bool(hvd.broadcast_object(out_of_time, root_rank=0))
        if current % task.checkpoint_every == 0 or current == task.steps or out_of_time:
            if hvd is None or worker.is_chief:  # tf.distribute saves are collective; Horovod's not
                manager.save(checkpoint_number=current)
        if out_of_time:
            stopped_early = True
            break
    bar.close()
    log.close()
    if not worker.is_chief:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    elif current >= task.steps:
        if task.finalize is not None:
            task.finalize(model)
        save_model(model, task.out / MODEL_FILE)
    result = {
        "steps": current,
        "requested_steps": task.steps,
        "workers": worker.count,
        "replicas": replicas,
        "final_loss": final_loss,
        "checkpoint": manager.latest_checkpoint,
        "model": str(task.out / MODEL_FILE) if current >= task.steps else None,
        "resumed_from_step": resumed_from,
        "epochs": current / task.epoch_steps if task.epoch_steps else None,
        "stopped_early": stopped_early,
        "seconds": time.monotonic() - started,
    }
    if worker.is_chief:
        write_json_atomic(task.out / layout.METRICS_FILE, result)
    return result


def coefficient_summary(positive_streak: np.ndarray) -> dict[str, float]:
    """The adaptive loss's coefficients of this step's positive classes, from the streaks.

    A class has t > 0 exactly when this step's batch held a positive of it (a negative batch
    resets t to 0), and its coefficient is max(-log10((0.01 + t) / 10), 0.01) (mlimages.paper.loss):
    the quantiles show whether classes spread over the range or sit at the floor, as they do
    when every class is in every batch.
    """
    from mlimages.paper.facts import COEF_SCALE, POS_COEF_FLOOR, POS_STREAK_OFFSET

    t = positive_streak[positive_streak > 0]
    if t.size == 0:
        return {"positive_classes": 0}
    coef = np.maximum(-np.log10((POS_STREAK_OFFSET + t) / COEF_SCALE), POS_COEF_FLOOR)
    p10, p50, p90 = np.quantile(coef, [0.1, 0.5, 0.9])
    return {
        "positive_classes": int(t.size),
        "coef_p10": float(p10),
        "coef_median": float(p50),
        "coef_p90": float(p90),
        "coef_at_floor": float(np.mean(coef <= POS_COEF_FLOOR)),
    }


def save_model(model, path: Path) -> Path:
    """Save a whole Keras model, atomically (Keras insists on the .keras suffix)."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def _tf_variable(variable):
    """The tf.Variable (mirrored under a strategy) behind a Keras 3 variable; Keras 2's
    variables (the Horovod environment) already are one."""
    import tensorflow as tf

    return variable if isinstance(variable, tf.Variable) else variable.value


class _Log:
    """log.jsonl (one JSON object per logged step) and TensorBoard scalars, chief only."""

    def __init__(self, out: Path, worker: WorkerInfo, resumed_from: int) -> None:
        self.enabled = worker.is_chief
        self.path = out / layout.LOG_FILE
        self.writer = None
        if not self.enabled:
            return
        import tensorflow as tf

        if resumed_from == 0 and self.path.exists():
            self.path.unlink()  # a fresh run does not append to an old run's curve
        elif resumed_from:
            _truncate_log(self.path, resumed_from)
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.writer = tf.summary.create_file_writer(str(out / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        import tensorflow as tf

        self.file.write(dumps_json(record) + "\n")  # a diverged loss: null, not NaN
        self.file.flush()
        with self.writer.as_default(step=record["step"]):
            for key, value in record.items():
                if key != "step":
                    tf.summary.scalar(key, value)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.writer.close()


def _truncate_log(path: Path, step: int) -> None:
    """Drop records after the checkpoint we resume from: they will be logged again."""
    if not path.exists():
        return
    kept = [
        line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step
    ]
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))


def read_log(out: Path) -> list[dict[str, Any]]:
    path = out / layout.LOG_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def last_logged_step(out: Path) -> int:
    """The last step in `out/log.jsonl` (0 before the first log line); cheap enough to poll."""
    path = out / layout.LOG_FILE
    lines = path.read_text().splitlines() if path.is_file() else []
    return json.loads(lines[-1])["step"] if lines else 0


def precision_recall_eval(images: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = (1, 5)):
    """An eval_fn: instance-level P/R@k of the model on a fixed held-out slice."""
    from mlimages.core.metrics import instance_metrics_at_k

    def evaluate(model) -> dict[str, float]:
        scores = np.asarray(model(images, training=False), dtype=np.float32)
        result = {}
        for k in ks:
            m = instance_metrics_at_k(scores, labels, min(k, labels.shape[1]))
            result[f"precision@{k}"] = m["precision"]
            result[f"recall@{k}"] = m["recall"]
        return result

    return evaluate
