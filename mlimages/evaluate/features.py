"""The pooled representation of images (the authors' `extract_feature.py`, done right).

Features are the global mean after the head's BN-ReLU (2,048-d for ResNet-50/101/152), the
input of the logits layer. With ten crops, the ten feature vectors of each image are averaged
into that image's vector (the authors' script averaged across the batch, mixing images).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlimages.core.atomic import atomic_path
from mlimages.paper.facts import EVAL_CROP_FRACTION


def extract_features(
    model,
    paths: Sequence[Path],
    image_size: int | None = None,
    ten_crop: bool = False,
    crop_fraction: float = EVAL_CROP_FRACTION,
    batch: int = 32,
    progress: bool | None = None,
) -> np.ndarray:
    """[images, feature dim] float32, one row an input path in order."""
    from mlimages.core.progress import quiet, tqdm
    from mlimages.input import image_input
    from mlimages.paper.model import feature_model
    from mlimages.train.checkpoint import default_image_size, with_image_size

    size = image_size or default_image_size(model)
    features_of = feature_model(with_image_size(model, size))
    rows = []
    blocks = image_input.batches(paths, size, crop_fraction, ten_crop, batch)
    bar = tqdm(total=len(paths), desc="features", unit="img", disable=quiet(progress))
    for block in blocks:  # [images, crops, S, S, 3]
        n, crops = block.shape[:2]
        _, feat = features_of(block.reshape(n * crops, *block.shape[2:]), training=False)
        rows.append(np.asarray(feat, dtype=np.float32).reshape(n, crops, -1).mean(axis=1))
        bar.update(n)
    bar.close()
    return np.concatenate(rows)


def save_features(path: str | os.PathLike, features: np.ndarray) -> Path:
    """np.save under a temporary name, then renamed."""
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"{path}: expected a file name ending in .npy")
    with atomic_path(path) as tmp:
        np.save(tmp, features)
    return path


def run_features(
    inputs: Sequence[str | os.PathLike],
    ckpt: str | os.PathLike,
    out: str | os.PathLike,
    image_size: int | None = None,
    ten_crop: bool = False,
    batch: int = 32,
    progress: bool | None = None,
    **architecture: Any,
) -> dict[str, Any]:
    """The `mlimages features` verb: images or lists in, `out` (.npy) written."""
    from mlimages.input import image_input
    from mlimages.train.checkpoint import default_image_size, load_model

    paths = image_input.image_paths(inputs)
    model = load_model(ckpt, **architecture)
    size = image_size or default_image_size(model)
    features = extract_features(model, paths, size, ten_crop, batch=batch, progress=progress)
    save_features(out, features)
    return {
        "out": str(out),
        "images": [str(p) for p in paths],
        "shape": list(features.shape),
        "image_size": size,
        "crops": 10 if ten_crop else 1,
    }
