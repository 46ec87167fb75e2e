"""The pretraining losses: the paper's adaptive weighted sigmoid cross-entropy (the authors'
`train.py`), made data-parallel, and the variants of the loss ablation.

Per class j the authors keep two streaks: `t_j`, consecutive batches in which j has a positive
(a target >= `mask_thres`), and `n_j`, consecutive *selected* batches in which it has none.
Each step a random `neg_select` fraction of the negative-only classes is selected. The class
coefficient, computed from the streaks *after* this step's update, is

- positive in this batch:             max(-log10((0.01 + t_j) / 10), 0.01)
- negative-only and selected:         -log10((8 + n_j) / 10) if above 0.01, else 0.001
- negative-only and not selected:     0

(the second equals `max(., 0.001)` for every integer streak), and the loss is
`sum_j coef_j * mean_batch(weighted_ce(logits, targets, pos_weight=12))`, targets equal to -1
masked out. A positive batch resets `n_j` to 0; a negative-only batch resets `t_j` to 0 and
adds 1 to `n_j` only when j is selected.

Under data parallelism every replica must see the same coefficients: the positive mask is the
global batch's (an all-reduce of the local masks), the negative draw comes from a stateless
RNG keyed by (seed, step), and the streaks are updated once from those global quantities, so
they stay identical everywhere. The per-class mean divides by the *global* batch size, so the
replicas' losses sum to the global loss. The ablation's `counters: replica` instead lets each
replica count its own local batch's positives and keep its own streaks (`StreakCounters`
with `per_replica`): the paper's loss as the authors' single-GPU code would run on each GPU.

The ablation's other kinds (`LossParams.kind`) drop the adaptive coefficients, and with them
the streaks and the negative draw; they keep the same normalisation, the -1 mask and the
weight decay, so that only the loss term differs:

- `sigmoid`:  plain sigmoid cross-entropy on the soft targets (`sigmoid_loss`);
- `weighted`: the paper's weighted cross-entropy with every coefficient 1
  (`weighted_sigmoid_loss` with `uniform_coefficients`);
- `asl`:      the asymmetric loss (ASL) for multi-label classification (`asymmetric_loss`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mlimages.paper.facts import (
    ASL_CLIP,
    ASL_EPS,
    ASL_GAMMA_NEG,
    ASL_GAMMA_POS,
    COEF_SCALE,
    IGNORE_TARGET,
    NEG_COEF_FLOOR,
    NEG_COEF_THRESHOLD,
    NEG_STREAK_OFFSET,
    PAPER_CLASSES,
    PAPER_MASK_THRES,
    PAPER_NEG_SELECT,
    PAPER_POS_WEIGHT,
    PAPER_SELECT_SEED,
    PAPER_WEIGHT_DECAY,
    POS_COEF_FLOOR,
    POS_STREAK_OFFSET,
)


class StreakCounters(tf.Module):
    """The per-class streaks `t` and `n`, checkpointable with the training state.

    Global streaks (the default): `ON_WRITE` with `ONLY_FIRST_REPLICA` aggregation: every
    replica computes the same update from global quantities, so under a `tf.distribute`
    strategy the first replica's value is written to all copies and assignment is allowed in
    replica context.

    `per_replica`: `ON_READ`, so each replica's copy keeps its own streaks (an assignment in
    replica context writes the local copy only), with `ONLY_FIRST_REPLICA`, so a read in
    cross-replica context (logging, saving) returns this worker's first replica's copy with no
    collective: every worker can read it alone without waiting for the others. A checkpoint
    holds that one copy, and a restore writes it to every replica: a resumed run restarts all
    replicas from the first replica's streaks. Without a strategy both are plain variables.
    """

    def __init__(
        self, num_classes: int, name: str | None = "streak_counters", per_replica: bool = False
    ) -> None:
        super().__init__(name=name)
        self.num_classes = num_classes
        self.per_replica = per_replica
        sync = tf.VariableSynchronization
        kwargs = {
            "trainable": False,
            "synchronization": sync.ON_READ if per_replica else sync.ON_WRITE,
            "aggregation": tf.VariableAggregation.ONLY_FIRST_REPLICA,
        }
        self.positive_streak = tf.Variable(
            tf.zeros([num_classes]), name="positive_streak", **kwargs
        )
        self.negative_streak = tf.Variable(
            tf.zeros([num_classes]), name="negative_streak", **kwargs
        )


def positive_mask(targets: tf.Tensor, mask_thres: float = PAPER_MASK_THRES) -> tf.Tensor:
    """[C] bool: classes with at least one target >= `mask_thres` in this (local) batch."""
    return tf.reduce_any(tf.cast(targets, tf.float32) >= mask_thres, axis=0)


def global_positive_mask(targets: tf.Tensor, mask_thres: float = PAPER_MASK_THRES) -> tf.Tensor:
    """`positive_mask` of the global batch under the current `tf.distribute` replica context
    (an all-reduce; with no strategy, the local mask). Other backends reduce `positive_mask`
    themselves, e.g. `hvd.allreduce(..., op=hvd.Sum) > 0`."""
    local = tf.cast(positive_mask(targets, mask_thres), tf.float32)
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: the caller holds the whole batch
        return local > 0
    # Sum of 0/1 over replicas > 0 is the logical OR: the global batch's positive classes.
    return context.all_reduce(tf.distribute.ReduceOp.SUM, local) > 0


def negative_selection(
    step: tf.Tensor | int,
    seed: int = PAPER_SELECT_SEED,
    num_classes: int = PAPER_CLASSES,
    neg_select: float = PAPER_NEG_SELECT,
) -> tf.Tensor:
    """[C] bool: the classes drawn this step, `uniform <= neg_select` as the authors draw.

    Stateless in (seed, step), so every replica and worker draws the same and a resumed run
    draws what the uninterrupted one would have.
    """
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    return tf.random.stateless_uniform([num_classes], seed=key) <= neg_select


def class_coefficients(
    counters: StreakCounters,
    global_positive: tf.Tensor,
    selected: tf.Tensor,
    update: bool = True,
) -> tf.Tensor:
    """[C] float32 loss coefficients from the streaks after this step, as the authors' graph
    computes them; with `update` the streaks keep the new values."""
    pos = tf.cast(global_positive, tf.float32)
    neg = 1.0 - pos
    sel = tf.cast(selected, tf.float32)
    t = counters.positive_streak
    n = counters.negative_streak
    # The authors' assign_add/assign_sub pair: t -> t + pos - t*neg, n -> n + neg*sel - n*pos.
    new_t = t + pos - t * neg
    new_n = n + neg * sel - n * pos
    if update:
        t.assign(new_t)
        n.assign(new_n)
    log10 = tf.math.log(10.0)
    pos_coef = -tf.math.log((POS_STREAK_OFFSET + new_t) / COEF_SCALE) / log10
    pos_coef = tf.where(pos_coef > POS_COEF_FLOOR, pos_coef, POS_COEF_FLOOR) * pos
    neg_coef = -tf.math.log((NEG_STREAK_OFFSET + new_n) / COEF_SCALE) / log10
    neg_coef = tf.where(neg_coef > NEG_COEF_THRESHOLD, neg_coef, NEG_COEF_FLOOR) * (neg * sel)
    return pos_coef + neg_coef


def weighted_sigmoid_loss(
    logits: tf.Tensor,
    targets: tf.Tensor,
    coefficients: tf.Tensor,
    global_batch_size: int | tf.Tensor,
    pos_weight: float = PAPER_POS_WEIGHT,
) -> tf.Tensor:
    """Scalar: sum over classes of coefficient x the class's batch-mean weighted sigmoid
    cross-entropy on soft targets. Means divide by the global batch, so summing the replicas'
    values gives the loss of the global batch."""
    logits = tf.cast(logits, tf.float32)
    targets = tf.cast(targets, tf.float32)
    ce = tf.nn.weighted_cross_entropy_with_logits(
        labels=targets, logits=logits, pos_weight=pos_weight
    )
    ce = ce * tf.cast(tf.not_equal(targets, IGNORE_TARGET), tf.float32)
    per_class = tf.reduce_sum(ce, axis=0) / tf.cast(global_batch_size, tf.float32)
    return tf.reduce_sum(per_class * tf.cast(coefficients, tf.float32))


def uniform_coefficients(num_classes: int) -> tf.Tensor:
    """[C] ones: the `weighted` kind is the paper's loss term with no adaptive coefficient,
    so that it isolates what the streaks and the negative draw add."""
    return tf.ones([num_classes], tf.float32)


def masked_class_mean_sum(
    per_element: tf.Tensor, targets: tf.Tensor, global_batch_size: int | tf.Tensor
) -> tf.Tensor:
    """Scalar: sum over classes of the class's batch mean of `per_element` [B, C], targets
    equal to -1 masked out. The variants share the paper's normalisation (means over the
    global batch), so the replicas' values sum to the global loss and only the term differs."""
    mask = tf.cast(tf.not_equal(tf.cast(targets, tf.float32), IGNORE_TARGET), tf.float32)
    per_class = tf.reduce_sum(per_element * mask, axis=0) / tf.cast(global_batch_size, tf.float32)
    return tf.reduce_sum(per_class)


def sigmoid_loss(
    logits: tf.Tensor, targets: tf.Tensor, global_batch_size: int | tf.Tensor
) -> tf.Tensor:
    """Scalar: plain sigmoid cross-entropy on the soft targets (every class coefficient 1, no
    positive weight): the baseline the paper's loss is an answer to."""
    logits = tf.cast(logits, tf.float32)
    targets = tf.cast(targets, tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    return masked_class_mean_sum(ce, targets, global_batch_size)


def asymmetric_loss(
    logits: tf.Tensor,
    targets: tf.Tensor,
    global_batch_size: int | tf.Tensor,
    gamma_neg: float = ASL_GAMMA_NEG,
    gamma_pos: float = ASL_GAMMA_POS,
    clip: float = ASL_CLIP,
) -> tf.Tensor:
    """Scalar: the asymmetric loss (ASL), another answer to the imbalance of
    positives and negatives: negatives are down-weighted by a focusing power of their
    probability and those below `clip` dropped, instead of weighting positives up.

    With p = sigmoid(logit) and p_m = max(p - clip, 0), per element
    `-[y (1 - p)^gamma_pos log p + (1 - y) p_m^gamma_neg log(1 - p_m)]`, the soft target y
    used as given. log p and (1 - p)^gamma are computed from log-sigmoids, log(1 - p_m) from
    min(sigmoid(-logit) + clip, 1) clamped at `ASL_EPS`, and a power of a base that may be 0
    only where the base is positive: finite values and gradients for any logit. The gradient
    flows through the focusing weights too, as in the loss's definition.
    """
    logits = tf.cast(logits, tf.float32)
    targets = tf.cast(targets, tf.float32)
    log_p = tf.math.log_sigmoid(logits)
    log_q = tf.math.log_sigmoid(-logits)  # log(1 - p)
    # (1 - p)^gamma_pos as exp(gamma log(1 - p)): no 0^gamma (whose gradient is 0 x inf at 0).
    pos_weight = tf.exp(gamma_pos * log_q) if gamma_pos else 1.0
    if clip > 0:
        p_m = tf.maximum(tf.sigmoid(logits) - clip, 0.0)
        log_1m_pm = tf.math.log(tf.maximum(tf.minimum(tf.sigmoid(-logits) + clip, 1.0), ASL_EPS))
        if gamma_neg:
            # The inner where keeps pow's gradient finite where p_m is 0 (its weight is 0).
            positive = p_m > 0
            safe = tf.where(positive, p_m, 1.0)
            neg_weight = tf.where(positive, tf.pow(safe, gamma_neg), 0.0)
        else:
            neg_weight = 1.0
    else:  # no shift: p_m = p, and p^gamma_neg from log p as above
        log_1m_pm = log_q
        neg_weight = tf.exp(gamma_neg * log_p) if gamma_neg else 1.0
    per_element = -(targets * pos_weight * log_p + (1.0 - targets) * neg_weight * log_1m_pm)
    return masked_class_mean_sum(per_element, targets, global_batch_size)


def uniform_loss(
    kind: str,
    logits: tf.Tensor,
    targets: tf.Tensor,
    global_batch_size: int | tf.Tensor,
    options: dict,
) -> tf.Tensor:
    """The data loss of a kind without streaks (`sigmoid`, `weighted`, `asl`); `options` are
    `LossParams`'s values. The `adaptive` kind needs the training state: `mlimages.train.engine`."""
    if kind == "sigmoid":
        return sigmoid_loss(logits, targets, global_batch_size)
    if kind == "weighted":
        ones = uniform_coefficients(logits.shape[-1])
        return weighted_sigmoid_loss(
            logits, targets, ones, global_batch_size, options["pos_weight"]
        )
    if kind == "asl":
        return asymmetric_loss(
            logits, targets, global_batch_size,
            options["asl_gamma_neg"], options["asl_gamma_pos"], options["asl_clip"],
        )  # fmt: skip
    raise ValueError(f"loss kind {kind!r}: expected sigmoid, weighted or asl")


def weight_decay_loss(
    model: keras.Model, rate: float = PAPER_WEIGHT_DECAY, bn_rate: float = 0.0
) -> tf.Tensor:
    """`rate * sum(l2_loss(v))` over trainable weights outside batch norm (dense bias
    included, as the authors' name filter leaves it in), plus `bn_rate` on BN's gamma and beta.

    Pretraining: rate 1e-4, bn_rate 0 (`train.py`). Fine-tuning: rate 1e-4, bn_rate 1e-5
    (`finetune.py`: 0.1 x weight decay on BN). Under a strategy each replica adds it once per
    step, so scale it with `tf.nn.scale_regularization_loss` before summing replicas.
    """
    plain: list[tf.Tensor] = []
    bn: list[tf.Tensor] = []
    for layer in model.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        for weight in layer.trainable_weights:
            (bn if is_bn else plain).append(tf.nn.l2_loss(tf.cast(weight, tf.float32)))
    total = rate * tf.add_n(plain) if plain else tf.constant(0.0)
    if bn_rate and bn:
        total += bn_rate * tf.add_n(bn)
    return total
