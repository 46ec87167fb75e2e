"""tf.data input: the authors' training augmentation and evaluation preprocessing.

Training (the authors' `data_processing/image_preprocessing.py` and `train.py`/`finetune.py`):

1. a crop from `sample_distorted_bounding_box` over the whole image, aspect ratio in
   [0.75, 1.33], 100 attempts; pretraining: min cover 0.7, area [0.7, 1]; fine-tuning:
   min cover 0, area [0.05, 1];
2. bilinear resize of the crop to `image_size` squared;
3. a horizontal flip with probability 1/2;
4. one of three equally likely branches: a rotation by an angle uniform in ±45° (nearest
   neighbour, zeros outside, as `tf.contrib.image.rotate`) followed by colour order 0
   (brightness ±32/255, saturation [0.5, 1.5], hue ±0.2, contrast [0.5, 1.5]); colour
   order 1 (brightness, contrast, saturation, hue); or nothing; then a clip to [0, 1];
5. scaling to [-1, 1].

The crop is computed from the JPEG header and decoded fused (`decode_and_crop_jpeg`), so the
rows and columns outside it are never produced, and the rotation and colour work happen on
the small resized image. Even so the resize and TensorFlow's rotation and HSV kernels, not the
decode, take most of the chain's CPU time. Every random draw is stateless, from (seed,
worker, element number), so a seed gives the same images whatever the parallelism.

Image sizes: records keep the stored JPEG at its stored size (the miniature's 32-64 px,
a real download's shorter side of 320); the pipeline crops and resizes to the `image_size`
it is given (224 or 299 in the paper, 32-48 on the miniature), so one set of records
serves every resolution.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from mlimages.config.sections import PipelineParams
from mlimages.input.legacy_records import LEGACY_DENSE
from mlimages.input.record_format import SPARSE
from mlimages.input.record_reader import detect_schema, read_records
from mlimages.input.shard_index import INDEX_NAME, SplitIndex
from mlimages.paper.facts import (
    ASPECT_RATIO_RANGE,
    BRIGHTNESS_DELTA,
    CONTRAST_RANGE,
    CROP_ATTEMPTS,
    EVAL_CROP_FRACTION,
    FINETUNE_CROP,
    HUE_DELTA,
    MAX_ANGLE,
    PRETRAIN_CROP,
    SATURATION_RANGE,
)

PRETRAIN, FINETUNE = "pretrain", "finetune"
MODES = (PRETRAIN, FINETUNE)
CROP = {PRETRAIN: PRETRAIN_CROP, FINETUNE: FINETUNE_CROP}  # (min_object_covered, min area)
_WHOLE_IMAGE = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])

Source = SplitIndex | str | os.PathLike | Sequence[str | os.PathLike]


def shards_of(source: Source, num_classes: int | None = None) -> tuple[list[str], str, Any]:
    """(shard paths, schema, index or None) of a split index, an index file, a split folder,
    a shard, or a list of shards; every shard must hold the same schema."""
    index = None
    if isinstance(source, SplitIndex):
        index = source
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir() or path.name == INDEX_NAME:
            index = SplitIndex.load(path)
        else:
            source = [path]
    if index is not None:
        paths, schema = [str(p) for p in index.paths], index.schema
        if num_classes is not None and num_classes != index.num_classes:
            raise ValueError(f"{index.root}: {index.num_classes} classes; asked for {num_classes}")
        return paths, schema, index
    paths = [str(p) for p in source]  # type: ignore[union-attr]
    if not paths:
        raise ValueError("no shards given; expected a split index, folder or shard paths")
    schemas = {p: detect_schema(p) for p in paths}
    schema = schemas[paths[0]]
    for path, other in schemas.items():
        if other != schema:
            raise ValueError(f"{path}: schema {other}; expected {schema} like {paths[0]}")
    if schema == LEGACY_DENSE and num_classes is not None:
        next(read_records(paths[0], num_classes))  # checks the vector's length
    return paths, schema, None


def _parser(schema: str, num_classes: int, mode: str):
    """serialized Example -> (JPEG bytes, target): dense confidences or a class index."""
    spec: dict[str, Any] = {"image": tf.io.FixedLenFeature([], tf.string)}
    if schema == SPARSE:
        spec["label/index"] = tf.io.VarLenFeature(tf.int64)
        spec["label/confidence"] = tf.io.VarLenFeature(tf.float32)
    elif schema == LEGACY_DENSE:
        spec["label"] = tf.io.FixedLenFeature([], tf.string)
    else:
        spec["label"] = tf.io.FixedLenFeature([], tf.int64)

    def parse(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parsed = tf.io.parse_single_example(serialized, spec)
        if schema == SPARSE:
            index = parsed["label/index"].values
            confidence = parsed["label/confidence"].values
            if mode == PRETRAIN:  # multi-hot confidences; a class listed twice keeps its max
                target = tf.tensor_scatter_nd_max(
                    tf.zeros([num_classes]), index[:, None], confidence
                )
            else:
                target = tf.gather(index, tf.argmax(confidence))
        elif schema == LEGACY_DENSE:
            dense = tf.reshape(tf.io.decode_raw(parsed["label"], tf.float32), [num_classes])
            target = dense if mode == PRETRAIN else tf.argmax(dense)
        else:
            label = parsed["label"]
            target = tf.one_hot(label, num_classes) if mode == PRETRAIN else label
        return parsed["image"], target

    return parse


def _without(schema: str, num_classes: int, classes: Sequence[int]):
    """serialized Example -> whether it carries none of `classes` (at any confidence): the
    labels alone are parsed, so a dropped image is never decoded."""
    excluded = tf.constant(sorted({int(c) for c in classes}), tf.int64)
    if schema == SPARSE:
        spec = {"label/index": tf.io.VarLenFeature(tf.int64)}
    elif schema == LEGACY_DENSE:
        spec = {"label": tf.io.FixedLenFeature([], tf.string)}
    else:
        spec = {"label": tf.io.FixedLenFeature([], tf.int64)}

    def keep(serialized: tf.Tensor) -> tf.Tensor:
        parsed = tf.io.parse_single_example(serialized, spec)
        if schema == SPARSE:
            present = parsed["label/index"].values
        elif schema == LEGACY_DENSE:
            dense = tf.reshape(tf.io.decode_raw(parsed["label"], tf.float32), [num_classes])
            present = tf.where(tf.not_equal(dense, 0.0))[:, 0]
        else:
            present = parsed["label"][None]
        return tf.logical_not(tf.reduce_any(tf.equal(present[:, None], excluded[None, :])))

    return keep


def crop_window(
    shape: tf.Tensor, seed: tf.Tensor, mode: str = PRETRAIN, min_area: float | None = None
) -> tf.Tensor:
    """[y, x, height, width] of the training crop of an image of `shape` [H, W, C];
    `min_area` replaces the mode's smallest area (the authors' bounds are for 224-px photos)."""
    min_cover, paper_min_area = CROP[mode]
    min_area = paper_min_area if min_area is None else min_area
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=_WHOLE_IMAGE,
        seed=seed,
        min_object_covered=min_cover,
        aspect_ratio_range=ASPECT_RATIO_RANGE,
        area_range=(min_area, 1.0),
        max_attempts=CROP_ATTEMPTS,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def draws(seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """The per-image decisions besides the crop: flip, branch (0, 1, 2) and angle."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    return {
        "flip": tf.random.stateless_uniform([], seeds[0]) < 0.5,
        "branch": tf.random.stateless_uniform([], seeds[1], 0, 3, dtype=tf.int32),
        "angle": tf.random.stateless_uniform([], seeds[2], -MAX_ANGLE, MAX_ANGLE),
    }


def rotate(image: tf.Tensor, angle: tf.Tensor, fill: str = "zeros") -> tf.Tensor:
    """Counter-clockwise rotation about the centre, nearest neighbour; outside the image
    zeros (the authors') or, with `fill="nearest"`, the nearest edge pixel."""
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2
    y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2
    transform = tf.stack([cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])[None]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform,
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="NEAREST",
        fill_mode="CONSTANT" if fill == "zeros" else "NEAREST",
    )[0]


def distort_colour(
    image: tf.Tensor, ordering: int, seed: tf.Tensor, hue_delta: float = HUE_DELTA
) -> tf.Tensor:
    """The authors' two colour orders on a float image in [0, 1] (hue jitter off at 0)."""
    s = tf.random.experimental.stateless_split(seed, 4)
    ops = {
        "brightness": lambda x: tf.image.stateless_random_brightness(x, BRIGHTNESS_DELTA, s[0]),
        "saturation": lambda x: tf.image.stateless_random_saturation(x, *SATURATION_RANGE, s[1]),
        "hue": lambda x: tf.image.stateless_random_hue(x, hue_delta, s[2]) if hue_delta else x,
        "contrast": lambda x: tf.image.stateless_random_contrast(x, *CONTRAST_RANGE, s[3]),
    }
    order = (
        ("brightness", "saturation", "hue", "contrast")
        if ordering == 0
        else ("brightness", "contrast", "saturation", "hue")
    )
    for name in order:
        image = ops[name](image)
    return image


def train_image(
    jpeg: tf.Tensor,
    seed: tf.Tensor,
    image_size: int,
    mode: str = PRETRAIN,
    augment: bool = True,
    hue_delta: float = HUE_DELTA,
    min_area: float | None = None,
    rotation_fill: str = "zeros",
) -> tf.Tensor:
    """One training image in [-1, 1], [image_size, image_size, 3] float32."""
    if not augment:
        image = tf.io.decode_jpeg(jpeg, channels=3)
        image = tf.image.resize(image, [image_size, image_size]) / 255.0
        return image * 2.0 - 1.0
    seeds = tf.random.experimental.stateless_split(seed, 3)
    window = crop_window(tf.image.extract_jpeg_shape(jpeg), seeds[0], mode, min_area)
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    image = tf.image.resize(image, [image_size, image_size]) / 255.0
    drawn = draws(seeds[1])
    image = tf.cond(drawn["flip"], lambda: tf.reverse(image, [1]), lambda: image)
    image = tf.switch_case(
        drawn["branch"],
        [
            lambda: distort_colour(
                rotate(image, drawn["angle"], rotation_fill), 0, seeds[2], hue_delta
            ),
            lambda: distort_colour(image, 1, seeds[2], hue_delta),
            lambda: image,
        ],
    )
    image = tf.clip_by_value(image, 0.0, 1.0)
    return image * 2.0 - 1.0


def eval_image(
    jpeg: tf.Tensor, image_size: int, crop_fraction: float = EVAL_CROP_FRACTION
) -> tf.Tensor:
    """The deterministic evaluation image in [-1, 1].

    Shorter side resized to `image_size / crop_fraction`, then the central square of
    `image_size` (224 -> 280, 299 -> 374 with the default 0.8). Done the cheap way round:
    the central square of side `crop_fraction * shorter side` is decoded fused and resized
    to `image_size`, the same pixels. 0.8 is the authors' `central_fraction` in
    `eval_image`; unlike theirs (central 80% of each side, then a resize that squashes
    non-square images) the aspect ratio is kept, the usual ImageNet protocol; on square
    images both are the same.
    """
    shape = tf.image.extract_jpeg_shape(jpeg)
    shorter = tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
    side = tf.maximum(1, tf.cast(tf.round(shorter * crop_fraction), tf.int32))
    window = tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, side, side])
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    image = tf.image.resize(image, [image_size, image_size]) / 255.0
    return image * 2.0 - 1.0


def _records(
    paths: list[str],
    input_context: tf.distribute.InputContext | None,
    seed: int | None,
    cycle_length: int,
) -> tuple[tf.data.Dataset, int]:
    """Records of this worker's shards (file-level split), shards shuffled when seeded."""
    files = tf.data.Dataset.from_tensor_slices(paths)
    worker = 0
    if input_context is not None and input_context.num_input_pipelines > 1:
        # Each worker reads its own shards: worker i takes shards i, i + n, i + 2n, ...
        if input_context.num_input_pipelines > len(paths):
            raise ValueError(
                f"{input_context.num_input_pipelines} input pipelines for {len(paths)} shards; "
                "expected at most one a shard (records.min_shards)"
            )
        files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        worker = input_context.input_pipeline_id
    if seed is not None:
        files = files.shuffle(len(paths), seed=seed + worker, reshuffle_each_iteration=True)
    dataset = files.interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 20),
        cycle_length=min(cycle_length, len(paths)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset, worker


def train_dataset(
    source: Source,
    image_size: int,
    batch_size: int,
    num_classes: int,
    mode: str = PRETRAIN,
    seed: int = 0,
    augment: bool = True,
    hue_delta: float = HUE_DELTA,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_buffer: int = 4096,
    cycle_length: int = 16,
    repeat: bool = True,
    min_area: float | None = None,
    rotation_fill: str = "zeros",
    exclude_classes: Sequence[int] | None = None,
) -> tf.data.Dataset:
    """Batches of (images [B, S, S, 3] float32 in [-1, 1], targets), endlessly by default.

    Targets: multi-hot confidences [B, num_classes] float32 (pretrain) or int64 class
    indices [B] (finetune, single-label records). `batch_size` is the global batch; with an
    `input_context` each worker reads its own shards and batches its per-replica share.
    Batches are full (drop remainder), so take `SplitIndex.steps_per_epoch` steps an epoch.
    `exclude_classes`: records labelled with any of them are dropped before decoding (the
    held-out novel classes); the epoch is then `record_reader.records_without` long.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}; expected one of {', '.join(MODES)}")
    paths, schema, index = shards_of(source, num_classes)
    if mode == FINETUNE and index is not None and not index.single_label:
        raise ValueError(f"{index.root}: multi-label records; fine-tuning expects one label each")
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    dataset, worker = _records(paths, input_context, seed, cycle_length)
    if exclude_classes:
        dataset = dataset.filter(_without(schema, num_classes, exclude_classes))
    dataset = dataset.shuffle(shuffle_buffer, seed=seed + worker, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    parse = _parser(schema, num_classes, mode)

    def example(n: tf.Tensor, serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        jpeg, target = parse(serialized)
        element_seed = tf.stack([tf.constant(seed, tf.int64), n + (worker << 40)])
        image = train_image(
            jpeg, element_seed, image_size, mode, augment, hue_delta, min_area, rotation_fill
        )
        return image, target

    dataset = dataset.enumerate().map(example, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(
    source: Source,
    image_size: int,
    batch_size: int,
    num_classes: int,
    mode: str = PRETRAIN,
    crop_fraction: float = EVAL_CROP_FRACTION,
    input_context: tf.distribute.InputContext | None = None,
    cycle_length: int = 16,
    exclude_classes: Sequence[int] | None = None,
) -> tf.data.Dataset:
    """One pass over every record in a fixed order, `eval_image` preprocessing, last batch
    kept whole or partial; targets and `exclude_classes` as in `train_dataset`."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}; expected one of {', '.join(MODES)}")
    paths, schema, _ = shards_of(source, num_classes)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    dataset, _ = _records(paths, input_context, None, cycle_length)
    if exclude_classes:
        dataset = dataset.filter(_without(schema, num_classes, exclude_classes))
    parse = _parser(schema, num_classes, mode)

    def example(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        jpeg, target = parse(serialized)
        return eval_image(jpeg, image_size, crop_fraction), target

    dataset = dataset.map(example, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def decode_only_dataset(source: Source, batch_size: int) -> tf.data.Dataset:
    """The reference a pipeline is measured against: parse and `tf.io.decode_jpeg` only,
    over the same records in the same order (batches of decoded shapes)."""
    paths, _, _ = shards_of(source)
    dataset, _ = _records(paths, None, None, 16)
    spec = {"image": tf.io.FixedLenFeature([], tf.string)}

    def decode(serialized: tf.Tensor) -> tf.Tensor:
        jpeg = tf.io.parse_single_example(serialized, spec)["image"]
        return tf.shape(tf.io.decode_jpeg(jpeg, channels=3))

    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def throughput(dataset: tf.data.Dataset, images: int, warmup_batches: int = 2) -> dict[str, float]:
    """Images a second over `images` images of a batched dataset, after a warm-up, and the
    CPU milliseconds an image (this process, every thread): the figure that other load on
    a shared machine disturbs least."""
    iterator = iter(dataset.repeat())
    for _ in range(warmup_batches):
        next(iterator)
    seen, start, cpu = 0, time.perf_counter(), _cpu_seconds()
    while seen < images:
        batch = next(iterator)
        seen += int(tf.shape(tf.nest.flatten(batch)[0])[0])
    wall = time.perf_counter() - start
    return {"images_per_s": seen / wall, "cpu_ms_per_image": 1000 * (_cpu_seconds() - cpu) / seen}


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def augmentation(p: PipelineParams, mode: str) -> dict[str, Any]:
    """The `train_image` options a profile's pipeline section sets for `mode`."""
    return {
        "augment": p.augment,
        "hue_delta": p.hue_delta,
        "min_area": p.finetune_min_area if mode == FINETUNE else None,
        "rotation_fill": p.rotation_fill,
    }


def preview(
    jpegs: Sequence[bytes], image_size: int, mode: str = PRETRAIN, seed: int = 0, **options: Any
) -> np.ndarray:
    """Training images of some JPEGs as uint8 [n, S, S, 3], for looking at the augmentation;
    `options` as `augmentation` gives them."""
    out = [
        train_image(tf.constant(j), tf.constant([seed, i], tf.int64), image_size, mode, **options)
        for i, j in enumerate(jpegs)
    ]
    return np.stack([np.round((x.numpy() + 1.0) * 127.5).astype(np.uint8) for x in out])


def preview_rows(
    jpegs: Sequence[bytes], image_size: int, options: PipelineParams, mode: str, seed: int = 0
) -> dict[str, list[np.ndarray]]:
    """uint8 images of some JPEGs as stored, as two training draws, un-augmented, and as the
    evaluation input: what the training and evaluation inputs make of them."""
    chosen = augmentation(options, mode)
    crop_fraction = options.eval_crop_fraction
    return {
        "stored": [tf.io.decode_jpeg(j, channels=3).numpy() for j in jpegs],
        "training input": list(preview(jpegs, image_size, mode, seed, **chosen)),
        "another draw": list(preview(jpegs, image_size, mode, seed + 1, **chosen)),
        "no augmentation": list(preview(jpegs, image_size, mode, seed, augment=False)),
        "evaluation": [
            np.round(
                (eval_image(tf.constant(j), image_size, crop_fraction).numpy() + 1) * 127.5
            ).astype(np.uint8)
            for j in jpegs
        ],
    }


def measure(
    index: SplitIndex,
    image_size: int,
    images: int,
    batch_size: int = 64,
    seed: int = 0,
    shuffle_buffer: int = 4096,
    augment: bool = True,
) -> pd.DataFrame:
    """Images/s and CPU ms an image of decoding alone, the pipeline without augmentation and
    the training input (with it, unless `augment` is off), one after the other in this
    process on the same records."""
    mode = FINETUNE if index.single_label else PRETRAIN
    batch_size = min(batch_size, index.records)
    common = {"mode": mode, "seed": seed, "shuffle_buffer": shuffle_buffer}
    args = (index, image_size, batch_size, index.num_classes)
    datasets = {
        "decode only": decode_only_dataset(index, batch_size),
        "no augmentation": train_dataset(*args, augment=False, **common),
        "training input": train_dataset(*args, augment=augment, **common),
    }
    rows = [{"pipeline": name, **throughput(d, images)} for name, d in datasets.items()]
    table = pd.DataFrame(rows)
    table["vs_decode_only"] = table["images_per_s"] / table["images_per_s"].iloc[0]
    table["image_size"] = image_size
    return table
