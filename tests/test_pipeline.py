"""The tf.data input: the paper's crop bounds and branch odds, targets, seeds, sharding, eval."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mlimages.data.labels.table import LabelTable
from mlimages.input import (
    pipeline,
    record_format,
    record_reader,
    record_writer,
    records,
    shard_index,
)

C = 6


def _jpeg(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((width, height), Image.BILINEAR).save(buffer, "JPEG")
    return buffer.getvalue()


def _split(
    folder: Path, rows: list[list[tuple[int, float]]], shards: int
) -> shard_index.SplitIndex:
    keys = []
    for i in range(len(rows)):
        keys.append(f"{i:03d}.jpg")
        (folder / keys[-1]).write_bytes(_jpeg(40 + 4 * (i % 3), 30 + 2 * (i % 4), i))
    LabelTable.from_rows(keys, rows).write(folder / "labels.txt")
    source = records.split_source(folder, C)
    return record_writer.write_split(source, folder / "out", "s", C, min_shards=shards, workers=1)


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> shard_index.SplitIndex:
    rows = [[(i % C, 1.0), ((i + 2) % C, 0.8)] for i in range(22)]
    return _split(tmp_path_factory.mktemp("multi"), rows, shards=4)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> shard_index.SplitIndex:
    return _split(tmp_path_factory.mktemp("single"), [[(i % C, 1.0)] for i in range(12)], 3)


def _windows(mode: str, shape: tuple[int, int, int], n: int) -> np.ndarray:
    seeds = tf.data.Dataset.range(n).map(lambda i: tf.stack([tf.constant(7, tf.int64), i]))
    windows = seeds.map(lambda s: pipeline.crop_window(tf.constant(shape), s, mode))
    return np.stack(list(windows.batch(n).as_numpy_iterator())[0])


@pytest.mark.parametrize("mode", pipeline.MODES)
def test_crop_area_and_aspect_stay_in_the_papers_bounds(mode: str) -> None:
    height, width = 120, 160
    y, x, h, w = _windows(mode, (height, width, 3), 3000).T
    assert (y >= 0).all() and (x >= 0).all() and (y + h <= height).all() and (x + w <= width).all()
    area = h * w / (height * width)
    aspect = w / h
    _, min_area = pipeline.CROP[mode]
    # the sampler rounds sides to whole pixels: allow one pixel's worth
    assert area.min() >= min_area - 2 / min(height, width) and area.max() <= 1.0
    assert aspect.min() >= 0.75 - 1.5 / h.min() and aspect.max() <= 1.33 + 1.5 / h.min()
    assert len({(a, b, c, d) for a, b, c, d in zip(y, x, h, w, strict=True)}) > 1000
    if mode == pipeline.PRETRAIN:
        assert area.max() > 0.95 and area.mean() < 0.9  # spread over [0.7, 1], not whole
    else:
        assert area.min() < 0.08 and (area < 0.3).mean() > 0.15  # the wide range is used


def test_flip_branches_and_angle_are_drawn_as_the_paper_says() -> None:
    n = 3000
    seeds = tf.data.Dataset.range(n).map(lambda i: tf.stack([tf.constant(3, tf.int64), i]))
    drawn = next(seeds.map(pipeline.draws).batch(n).as_numpy_iterator())
    counts = np.bincount(drawn["branch"], minlength=3)
    assert counts.sum() == n and len(counts) == 3
    assert (abs(counts - n / 3) < 4.5 * math.sqrt(n * 2 / 9)).all(), counts  # each about 1/3
    assert abs(drawn["flip"].sum() - n / 2) < 4.5 * math.sqrt(n / 4)
    degrees = np.degrees(drawn["angle"])
    assert degrees.min() >= -45 and degrees.max() <= 45
    assert degrees.min() < -40 and degrees.max() > 40 and abs(degrees.mean()) < 2


def _branch_seed(branch: int, flip: bool) -> tf.Tensor:
    """An element seed whose draws take the given branch and flip."""
    for i in range(200):
        seed = tf.constant([1, i], tf.int64)
        drawn = pipeline.draws(tf.random.experimental.stateless_split(seed, 3)[1])
        if int(drawn["branch"]) == branch and bool(drawn["flip"]) == flip:
            return seed
    raise AssertionError("no seed found")


def test_each_branch_does_what_it_says() -> None:
    jpeg = tf.constant(_jpeg(64, 48, 0))
    size = 24

    def crop_resize(seed: tf.Tensor) -> np.ndarray:
        sub = tf.random.experimental.stateless_split(seed, 3)
        window = pipeline.crop_window(tf.image.extract_jpeg_shape(jpeg), sub[0])
        image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
        return (tf.image.resize(image, [size, size]) / 255.0).numpy() * 2 - 1

    plain = _branch_seed(2, flip=False)
    out = pipeline.train_image(jpeg, plain, size).numpy()
    assert out.shape == (size, size, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.clip(crop_resize(plain), -1, 1), atol=1e-6)
    flipped = _branch_seed(2, flip=True)
    np.testing.assert_allclose(
        pipeline.train_image(jpeg, flipped, size).numpy(), crop_resize(flipped)[:, ::-1], atol=1e-6
    )
    colour = _branch_seed(1, flip=False)
    assert (
        np.abs(pipeline.train_image(jpeg, colour, size).numpy() - crop_resize(colour)).max() > 0.01
    )
    white = tf.constant(np.full((32, 32, 3), 0.5, np.float32))
    rotated = pipeline.rotate(white, tf.constant(math.pi / 4)).numpy()
    assert (rotated[0, 0] == 0).all() and (rotated[16, 16] == 0.5).all()  # zeros outside
    np.testing.assert_array_equal(pipeline.rotate(white, tf.constant(0.0)).numpy(), white.numpy())


def test_train_dataset_targets_shapes_and_seeds(multi: shard_index.SplitIndex) -> None:
    def first(seed: int, augment: bool = True):
        dataset = pipeline.train_dataset(
            multi, 16, 8, C, seed=seed, augment=augment, shuffle_buffer=64
        )
        return next(iter(dataset))

    images, targets = first(0)
    assert images.shape == (8, 16, 16, 3) and images.dtype == tf.float32
    assert targets.shape == (8, C) and targets.dtype == tf.float32
    assert -1.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
    for target in targets.numpy():  # every record: one label at 1.0 and one at 0.8
        np.testing.assert_allclose(np.sort(target[target > 0]), [0.8, 1.0])
    again, same = first(0)
    np.testing.assert_array_equal(images.numpy(), again.numpy())
    np.testing.assert_array_equal(targets.numpy(), same.numpy())
    assert not np.array_equal(images.numpy(), first(1)[0].numpy())
    plain, _ = first(0, augment=False)
    assert plain.shape == (8, 16, 16, 3)


def test_one_epoch_is_exactly_steps_per_epoch(multi: shard_index.SplitIndex) -> None:
    dataset = pipeline.train_dataset(multi, 8, 4, C, repeat=False, augment=False)
    assert sum(1 for _ in dataset) == multi.steps_per_epoch(4) == 22 // 4


def test_finetune_targets_are_class_indices(
    single: shard_index.SplitIndex, multi: shard_index.SplitIndex
) -> None:
    images, labels = next(iter(pipeline.train_dataset(single, 16, 4, C, pipeline.FINETUNE)))
    assert labels.dtype == tf.int64 and labels.shape == (4,)
    evaluated = list(pipeline.eval_dataset(single, 16, 5, C, pipeline.FINETUNE))
    assert [len(y) for _, y in evaluated] == [5, 5, 2]  # every record once, last batch partial
    got = sorted(np.concatenate([y.numpy() for _, y in evaluated]).tolist())
    assert got == sorted(i % C for i in range(12))
    with pytest.raises(ValueError, match="multi-label records"):
        pipeline.train_dataset(multi, 16, 4, C, pipeline.FINETUNE)


def test_excluded_classes_drop_exactly_their_records(
    multi: shard_index.SplitIndex, single: shard_index.SplitIndex
) -> None:
    """Every record with a label of an excluded class (at either confidence) goes, no other."""
    excluded = [1, 4]
    kept = [i for i in range(22) if not {i % C, (i + 2) % C} & set(excluded)]
    assert 0 < len(kept) < 22 and sum(record_reader.records_without(multi, excluded)) == len(kept)
    dataset = pipeline.train_dataset(
        multi, 8, 1, C, repeat=False, augment=False, exclude_classes=excluded
    )
    targets = np.concatenate([y.numpy() for _, y in dataset])
    assert len(targets) == len(kept) and not targets[:, excluded].any()
    evaluated = pipeline.eval_dataset(multi, 8, 5, C, exclude_classes=excluded)
    assert sum(len(y) for _, y in evaluated) == len(kept)
    labels = [y.numpy() for _, y in pipeline.eval_dataset(single, 8, 12, C, pipeline.FINETUNE)]
    assert len(np.concatenate(labels)) == 12
    dropped = pipeline.eval_dataset(single, 8, 12, C, pipeline.FINETUNE, exclude_classes=[0])
    assert sorted(np.concatenate([y.numpy() for _, y in dropped]).tolist()) == sorted(
        i % C for i in range(12) if i % C
    )


def test_each_worker_reads_its_own_shards(multi: shard_index.SplitIndex) -> None:
    names = []
    for worker in range(2):
        context = tf.distribute.InputContext(2, worker, 2)
        dataset, _ = pipeline._records([str(p) for p in multi.paths], context, 0, 16)
        names.append({record_format.decode_example(r.numpy())[1].name for r in dataset})
        batch = next(iter(pipeline.train_dataset(multi, 8, 6, C, input_context=context)))
        assert batch[0].shape[0] == 3  # the per-replica share of the global batch
    assert not names[0] & names[1] and len(names[0] | names[1]) == multi.records
    assert sorted(map(len, names)) == sorted(multi.worker_records(2))


def test_eval_image_is_a_central_crop_of_the_shorter_side() -> None:
    jpeg = _jpeg(60, 40, 1)
    out = pipeline.eval_image(tf.constant(jpeg), 16).numpy()
    decoded = tf.io.decode_jpeg(jpeg, channels=3)
    central = decoded[4:36, 14:46]  # 0.8 x 40 = 32, centred in 60 x 40
    expected = tf.image.resize(central, [16, 16]).numpy() / 255.0 * 2 - 1
    # the fused decode upsamples chroma differently along the crop's right edge only
    np.testing.assert_allclose(out[:, :15], expected[:, :15], atol=1e-5)
    assert np.abs(out - expected).mean() < 0.01
    assert pipeline.eval_image(tf.constant(jpeg), 299).shape == (299, 299, 3)


def test_authors_records_through_the_pipeline(shared: Path) -> None:
    shards = sorted((shared / "tfrecords").glob("*.tfrecords"))
    dense = {}
    for shard in shards:
        for _, record in record_reader.read_records(shard):
            dense[record.name] = record
    batches = list(pipeline.eval_dataset(shards, 224, 4, 11_166))
    ((images, targets),) = batches
    assert images.shape == (4, 224, 224, 3) and targets.shape == (4, 11_166)
    got = sorted(tuple(np.flatnonzero(t).tolist()) for t in targets.numpy())
    assert got == sorted(tuple(r.indices.tolist()) for r in dense.values())
    images, _ = next(iter(pipeline.train_dataset(shards, 299, 2, 11_166, shuffle_buffer=4)))
    assert images.shape == (2, 299, 299, 3)
    with pytest.raises(ValueError, match="11166 classes; expected 1000"):
        pipeline.eval_dataset(shards, 224, 4, 1000)
