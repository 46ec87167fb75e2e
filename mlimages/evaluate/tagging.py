"""Tags for images: sigmoid scores over every class of a checkpoint, named from the dictionary.

Classes are keyed by index (262 names repeat in the authors' dictionary), so every tag carries
its index and WordNet id beside the name. `leaves_only` keeps classes without children (the
most specific tags); `threshold` drops tags scoring below it. Images come from files (the
`mlimages tag` verb) or from records (notebook 06's grid of validation images).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlimages.data.taxonomy import Taxonomy
from mlimages.paper.facts import EVAL_CROP_FRACTION

if TYPE_CHECKING:
    from mlimages.input.shard_index import SplitIndex


def top_tags(
    scores: np.ndarray,
    taxonomy: Taxonomy,
    top_k: int = 10,
    leaves_only: bool = False,
    threshold: float | None = None,
) -> list[list[dict[str, Any]]]:
    """For each row of [N, C] probabilities, its best `top_k` tags, highest first (ties: lower
    index first)."""
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[1] != taxonomy.num_classes:
        raise ValueError(
            f"scores of {scores.shape[-1]} classes; the dictionary {taxonomy.source or ''} "
            f"has {taxonomy.num_classes}"
        )
    if top_k < 1:
        raise ValueError(f"top_k = {top_k}; expected at least 1")
    allowed = taxonomy.leaves if leaves_only else np.arange(taxonomy.num_classes)
    out = []
    for row in scores:
        candidates = allowed[np.lexsort((allowed, -row[allowed]))][:top_k]
        out.append(
            [
                {
                    "index": int(j),
                    "wnid": taxonomy.wnids[j],
                    "name": taxonomy.names[j],
                    "score": float(row[j]),
                }
                for j in candidates
                if threshold is None or row[j] >= threshold
            ]
        )
    return out


def predict(
    model,
    paths: Sequence[Path],
    image_size: int,
    crop_fraction: float = EVAL_CROP_FRACTION,
    batch: int = 32,
) -> np.ndarray:
    """[images, classes] sigmoid scores on the evaluation crop."""
    import tensorflow as tf

    from mlimages.input import image_input
    from mlimages.train.checkpoint import with_image_size

    model = with_image_size(model, image_size)
    rows = []
    for block in image_input.batches(paths, image_size, crop_fraction, False, batch):
        logits = model(block[:, 0], training=False)
        rows.append(tf.sigmoid(tf.cast(logits, tf.float32)).numpy())
    return np.concatenate(rows)


def record_tags(
    model,
    index: SplitIndex,
    image_size: int,
    taxonomy: Taxonomy,
    images: int = 12,
    tags: int = 5,
    crop_fraction: float = EVAL_CROP_FRACTION,
) -> tuple[np.ndarray, np.ndarray, list[list[dict[str, Any]]]]:
    """The first `images` records of a multi-label split as the model sees them (in [-1, 1]),
    their targets, and the model's top `tags` tags of each."""
    import tensorflow as tf

    from mlimages.input import pipeline
    from mlimages.train.checkpoint import with_image_size

    dataset = pipeline.eval_dataset(
        index, image_size, images, index.num_classes, pipeline.PRETRAIN, crop_fraction
    )
    x, y = next(iter(dataset))
    logits = with_image_size(model, image_size)(x, training=False)
    scores = tf.sigmoid(tf.cast(logits, tf.float32)).numpy()
    return x.numpy(), y.numpy(), top_tags(scores, taxonomy, tags)


def run_tagging(
    inputs: Sequence[str | os.PathLike],
    ckpt: str | os.PathLike,
    dictionary: str | os.PathLike,
    top_k: int = 10,
    leaves_only: bool = False,
    threshold: float | None = None,
    image_size: int | None = None,
    batch: int = 32,
    **architecture: Any,
) -> list[dict[str, Any]]:
    """The `mlimages tag` verb: one entry an image with its tags."""
    from mlimages.data.taxonomy import load_dictionary
    from mlimages.input import image_input
    from mlimages.train.checkpoint import default_image_size, load_model, num_classes_of

    taxonomy = load_dictionary(dictionary)
    paths = image_input.image_paths(inputs)
    model = load_model(ckpt, **architecture)
    if num_classes_of(model) != taxonomy.num_classes:
        raise ValueError(
            f"{ckpt}: {num_classes_of(model)} classes; the dictionary {dictionary} has "
            f"{taxonomy.num_classes}; expected the dictionary it was trained with (--dictionary)"
        )
    size = image_size or default_image_size(model)
    scores = predict(model, paths, size, batch=batch)
    tags = top_tags(scores, taxonomy, top_k, leaves_only, threshold)
    return [
        {"image": str(p), "image_size": size, "tags": t} for p, t in zip(paths, tags, strict=True)
    ]
