"""The paper's network and pretraining schedule as a profile's sections configure them.

`mlimages.paper` knows nothing of profiles; this is where a section's values are unpacked
into its functions. Keras is imported only when a network is built, so that the schedule
needs no backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlimages.config.training import ModelParams, ScheduleParams
from mlimages.paper.recipe import Schedule, lr_scale
from mlimages.paper.recipe import pretrain_schedule as paper_pretrain_schedule

if TYPE_CHECKING:
    import keras


def resnet(
    model: ModelParams, num_classes: int | None = None, image_size: int | None = None
) -> keras.Model:
    """A profile's `model` section built; `num_classes` fills in when the section leaves it
    None (the dataset's count)."""
    from mlimages.paper.model import build_resnet, dtype_policy, set_bn_momentum

    classes = model.num_classes or num_classes
    if classes is None:
        raise ValueError("model.num_classes is None and no class count was given")
    network = build_resnet(
        classes,
        model.depth,
        blocks=model.blocks,
        width=model.width,
        image_size=image_size,
        dtype=dtype_policy(model.mixed_precision),
    )
    set_bn_momentum(network, model.bn_momentum)
    return network


def pretrain_schedule(schedule: ScheduleParams, global_batch: int) -> Schedule:
    """The pretraining table of a profile's `schedule` section, scaled to `global_batch`."""
    return paper_pretrain_schedule(
        lr=schedule.lr,
        decay_steps=schedule.decay_steps,
        decay_factor=schedule.decay_factor,
        num_decays=schedule.num_decays,
        warmup_lr=schedule.warmup_lr,
        warmup_steps=schedule.warmup_steps,
        warmup_interval=schedule.warmup_interval,
        warmup_factor=schedule.warmup_factor,
        scale=lr_scale(global_batch, schedule.reference_batch),
    )
