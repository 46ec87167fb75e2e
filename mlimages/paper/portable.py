"""The paper's training pieces in `keras.ops`: its adaptive loss and the authors' momentum rule,
for the TensorFlow, JAX and PyTorch backends of Keras 3 alike.

The TensorFlow engine (`mlimages.train.engine` with `mlimages.paper.loss`) keeps its own
implementation: it
runs under tf.distribute and Horovod, and the study's numbers are its. These are the same
formulas for users of the other backends; tests/test_portable.py checks that both give the same
values on the same inputs. One thing differs by necessity: the negative draw. TensorFlow's
stateless RNG exists in TensorFlow only, so the draw here is numpy's, keyed by (seed, step) as
well: deterministic and resumable, but not the same classes as the TF engine draws.

A training step (`train_step`) is written once per backend, because each computes gradients
its own way (a tape, `jax.value_and_grad` over a stateless call, autograd); the loss and the
update inside it are the shared `keras.ops` code.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from mlimages.paper.facts import (
    COEF_SCALE,
    IGNORE_TARGET,
    NEG_COEF_FLOOR,
    NEG_COEF_THRESHOLD,
    NEG_STREAK_OFFSET,
    PAPER_MASK_THRES,
    PAPER_NEG_SELECT,
    PAPER_POS_WEIGHT,
    POS_COEF_FLOOR,
    POS_STREAK_OFFSET,
)

Tensor = object  # a backend tensor (tf.Tensor, jax.Array, torch.Tensor) or a keras.Variable


def positive_mask(targets: Tensor, mask_thres: float = PAPER_MASK_THRES) -> Tensor:
    """[C] bool: classes with at least one target >= `mask_thres` in this batch."""
    return ops.any(ops.cast(targets, "float32") >= mask_thres, axis=0)


def negative_selection(
    step: int, seed: int, num_classes: int, neg_select: float = PAPER_NEG_SELECT
) -> np.ndarray:
    """[C] bool: the negative classes drawn at `step`, `uniform <= neg_select` as the authors
    draw; a function of (seed, step) only, so a resumed run draws what an unbroken one would."""
    return np.random.default_rng([seed, step]).random(num_classes) <= neg_select


def class_coefficients(
    positive_streak: Tensor, negative_streak: Tensor, positive: Tensor, selected: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(coefficients, new positive streak, new negative streak), as `mlimages.paper.loss` computes
    them; the caller keeps the new streaks (no variable is written here, so that the function
    is as usable inside a JAX transform as outside)."""
    pos = ops.cast(positive, "float32")
    neg = 1.0 - pos
    sel = ops.cast(selected, "float32")
    t = ops.cast(positive_streak, "float32")
    n = ops.cast(negative_streak, "float32")
    new_t = t + pos - t * neg
    new_n = n + neg * sel - n * pos
    log10 = float(np.log(10.0))
    pos_coef = -ops.log((POS_STREAK_OFFSET + new_t) / COEF_SCALE) / log10
    pos_coef = ops.where(pos_coef > POS_COEF_FLOOR, pos_coef, POS_COEF_FLOOR) * pos
    neg_coef = -ops.log((NEG_STREAK_OFFSET + new_n) / COEF_SCALE) / log10
    neg_coef = ops.where(neg_coef > NEG_COEF_THRESHOLD, neg_coef, NEG_COEF_FLOOR) * (neg * sel)
    return pos_coef + neg_coef, new_t, new_n


def weighted_cross_entropy(logits: Tensor, targets: Tensor, pos_weight: float) -> Tensor:
    """TensorFlow's `weighted_cross_entropy_with_logits` in its stable form:
    (1 - z) x + (1 + (q - 1) z) (log(1 + exp(-|x|)) + max(-x, 0))."""
    log_weight = 1.0 + (pos_weight - 1.0) * targets
    softplus_neg = ops.log1p(ops.exp(-ops.abs(logits))) + ops.relu(-logits)
    return (1.0 - targets) * logits + log_weight * softplus_neg


def weighted_sigmoid_loss(
    logits: Tensor,
    targets: Tensor,
    coefficients: Tensor,
    global_batch_size: int,
    pos_weight: float = PAPER_POS_WEIGHT,
) -> Tensor:
    """Scalar: sum over classes of coefficient x the class's batch-mean weighted sigmoid
    cross-entropy on soft targets, targets equal to -1 masked out (`mlimages.paper.loss`)."""
    logits = ops.cast(logits, "float32")
    targets = ops.cast(targets, "float32")
    ce = weighted_cross_entropy(logits, targets, pos_weight)
    ce = ce * ops.cast(ops.not_equal(targets, IGNORE_TARGET), "float32")
    per_class = ops.sum(ce, axis=0) / float(global_batch_size)
    return ops.sum(per_class * ops.cast(coefficients, "float32"))


def decay_rates(model: keras.Model, rate: float, bn_rate: float = 0.0) -> list[float]:
    """The weight-decay rate of each of `model.trainable_variables`, in that order: `rate`
    outside batch norm, `bn_rate` on its gamma and beta
    (`mlimages.paper.loss.weight_decay_loss`)."""
    by_id: dict[int, float] = {}
    for layer in model.layers:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        for weight in layer.trainable_weights:
            by_id[id(weight)] = bn_rate if is_bn else rate
    return [by_id[id(v)] for v in model.trainable_variables]


def weight_decay_loss(weights: Sequence[Tensor], rates: Sequence[float]) -> Tensor:
    """Scalar: sum of rate x l2_loss(w) (half the sum of squares) over `weights`; weights are
    passed in, not read from the model, so that a JAX step differentiates its traced values."""
    terms = [
        rate * 0.5 * ops.sum(ops.square(ops.cast(w, "float32")))
        for w, rate in zip(weights, rates, strict=True)
        if rate
    ]
    return sum(terms[1:], terms[0]) if terms else ops.convert_to_tensor(0.0)


@keras.saving.register_keras_serializable(package="mlimages")
class TF1Momentum(keras.optimizers.Optimizer):
    """The authors' TF1 `MomentumOptimizer` rule: accum = m·accum + g; w -= lr·accum.

    Keras's SGD keeps v = m·v - lr·g instead, which is the same only while the learning rate
    is constant; the paper's schedule changes it, and the TF engine
    (`mlimages.train.engine`) applies
    this rule, so the other backends get it as an optimizer of its own.
    """

    def __init__(
        self, learning_rate: float = 0.01, momentum: float = 0.9, name: str = "tf1_momentum", **kw
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kw)
        self.momentum = momentum

    def build(self, variables: list) -> None:
        if self.built:
            return
        super().build(variables)
        self.accumulators = self.add_optimizer_variables(variables, "accumulator")

    def update_step(self, gradient: Tensor, variable: Tensor, learning_rate: Tensor) -> None:
        accum = self.accumulators[self._get_variable_index(variable)]
        gradient = ops.cast(gradient, variable.dtype)
        momentum = ops.cast(self.momentum, variable.dtype)
        self.assign(accum, ops.add(ops.multiply(accum, momentum), gradient))
        self.assign_sub(variable, ops.multiply(ops.cast(learning_rate, variable.dtype), accum))

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum}


def train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    images: Tensor,
    targets: Tensor,
    coefficients: Tensor,
    rates: Sequence[float],
    pos_weight: float = PAPER_POS_WEIGHT,
) -> float:
    """One step of the paper's pretraining on the current backend: forward, the adaptive loss
    with the given coefficients plus weight decay, gradients, the optimizer's update. Returns
    the loss. The batch is the global batch (one device: no replicas to all-reduce)."""
    batch = int(ops.shape(images)[0])

    def loss_of(logits: Tensor, weights: Sequence[Tensor]) -> Tensor:
        data = weighted_sigmoid_loss(logits, targets, coefficients, batch, pos_weight)
        return data + weight_decay_loss(weights, rates)

    step = {"tensorflow": _tf_step, "jax": _jax_step, "torch": _torch_step}
    return step[keras.config.backend()](model, optimizer, images, loss_of)


def _tf_step(model, optimizer, images, loss_of) -> float:
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_of(model(images, training=True), model.trainable_variables)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)
    return float(loss)


def _jax_step(model, optimizer, images, loss_of) -> float:
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def forward(weights, state):
        logits, state = model.stateless_call(weights, state, images, training=True)
        return loss_of(logits, weights), state

    (loss, state), grads = jax.value_and_grad(forward, has_aux=True)(trainable, non_trainable)
    for variable, value in zip(model.non_trainable_variables, state, strict=True):
        variable.assign(value)  # the BN moving statistics
    optimizer.apply(grads, model.trainable_variables)
    return float(loss)


def _torch_step(model, optimizer, images, loss_of) -> float:
    import torch

    model.zero_grad(set_to_none=True)
    loss = loss_of(model(images, training=True), model.trainable_variables)
    loss.backward()
    grads = [v.value.grad for v in model.trainable_variables]
    with torch.no_grad():
        optimizer.apply(grads, model.trainable_variables)
    return float(loss.detach())
