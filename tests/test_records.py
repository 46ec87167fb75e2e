"""TFRecord shards: the authors' records read back, our round trip, atomic shards, CRC errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from mlimages import cli
from mlimages.config.params import load_params
from mlimages.config.sections import SynthParams
from mlimages.data.labels.read import read_label_list
from mlimages.data.labels.table import LabelTable
from mlimages.data.synthetic import ensure_miniature, mini_taxonomy
from mlimages.input import (
    legacy_records,
    record_format,
    record_reader,
    record_writer,
    records,
    shard_index,
)

MINI_CLASSES = mini_taxonomy().num_classes

TINY = SynthParams(
    num_train=40,
    num_val=8,
    image_size=32,
    target_classes=2,
    target_train_per_class=3,
    target_val_per_class=2,
    novel_classes=2,
)


def stand_in_download(mini_root: Path, download: Path, synth: SynthParams = TINY) -> None:
    """What the download stage writes, from the miniature: per split folder, images linked
    under it and `labels.txt` keyed by the path relative to that folder."""
    mini = ensure_miniature(synth, mini_root)
    lists = {
        "train": (mini.url_list("train"), None),
        "val": (mini.url_list("val"), None),
        "target_train": (mini.target_list("train"), mini.target_dir / "train"),
        "target_val": (mini.target_list("val"), mini.target_dir / "val"),
    }
    if mini.has_novel:
        for part in ("train", "val"):
            lists[f"novel_{part}"] = (mini.novel_list(part), mini.novel_dir / part)
    for split, (label_list, root) in lists.items():
        table = read_label_list(label_list)
        folder = download / split
        keys = []
        for key in table.keys():
            source = Path(urlparse(key).path) if root is None else root / key
            relative = f"images/{source.name}" if root is None else f"images/{key}"
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            if not (folder / relative).exists():
                (folder / relative).symlink_to(source)
            keys.append(relative)
        rows = []
        for i in range(len(table)):
            indices, confidences = table.labels(i)
            rows.append(list(zip(indices.tolist(), confidences.tolist(), strict=True)))
        LabelTable.from_rows(keys, rows).write(folder / "labels.txt")


@pytest.fixture(scope="module")
def download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stand_in")
    stand_in_download(root / "mini", root / "download")
    return root / "download"


def _legacy_expected(path: Path) -> list[dict]:
    """The authors' records decoded by TensorFlow's own protobuf classes, not our reader."""
    import tensorflow as tf

    out = []
    for raw in tf.data.TFRecordDataset(str(path)):
        feature = tf.train.Example.FromString(raw.numpy()).features.feature
        dense = np.frombuffer(feature["label"].bytes_list.value[0], dtype="<f4")
        nonzero = np.flatnonzero(dense)
        out.append(
            {
                "name": feature["name"].bytes_list.value[0].decode(),
                "width": feature["width"].int64_list.value[0],
                "height": feature["height"].int64_list.value[0],
                "image": feature["image"].bytes_list.value[0],
                "classes": len(dense),
                "labels": dict(zip(nonzero.tolist(), dense[nonzero].tolist(), strict=True)),
            }
        )
    return out


def test_authors_legacy_records_read_back_exactly(shared: Path) -> None:
    shards = sorted((shared / "tfrecords").glob("*.tfrecords"))
    assert len(shards) == 2
    total = 0
    for shard in shards:
        expected = _legacy_expected(shard)
        got = list(record_reader.read_records(shard, num_classes=11_166))
        assert len(got) == len(expected) > 0
        for (schema, record), want in zip(got, expected, strict=True):
            assert schema == legacy_records.LEGACY_DENSE and want["classes"] == 11_166
            assert (record.name, record.width, record.height) == (
                want["name"],
                want["width"],
                want["height"],
            )
            assert record.image == want["image"]
            assert Image.open(io.BytesIO(record.image)).size == (
                record.width,
                record.height,
            )
            assert (
                dict(zip(record.indices.tolist(), record.confidences.tolist(), strict=True))
                == (want["labels"])
            )
        total += len(got)
    assert total == 4
    assert record_reader.detect_schema(shards[0]) == legacy_records.LEGACY_DENSE
    assert record_reader.inspect(shards[1])[0]["labels"] == {5170: 0.9, 5177: 0.9}


def test_legacy_dense_of_the_wrong_width_is_refused(shared: Path) -> None:
    with pytest.raises(record_format.RecordError, match=r"0.tfrecords: record 0 .*11166 classes"):
        next(record_reader.read_records(shared / "tfrecords" / "0.tfrecords", num_classes=1000))


def test_every_schema_decodes_to_the_same_record() -> None:
    base = record_format.Record(
        "n01/x.JPEG", 4, 3, b"\xff\xd8jpeg", np.array([2]), np.ones(1, "f4")
    )
    for schema in record_format.SCHEMAS:
        data = record_format.encode_example(base, schema, num_classes=5)
        got_schema, got = record_format.decode_example(data, num_classes=5)
        assert got_schema == schema
        assert got.summary() == base.summary() and got.image == base.image
    sparse = len(record_format.label_features(np.arange(9), np.full(9, 0.9, "f4")))
    dense = len(
        record_format.label_features(
            np.arange(9), np.full(9, 0.9, "f4"), legacy_records.LEGACY_DENSE, 11_166
        )
    )
    assert dense > 44_664 and dense / sparse > 100


def test_our_examples_parse_in_tensorflow() -> None:
    import tensorflow as tf

    record = record_format.Record(
        "a b", 7, 5, b"\xff\xd8", np.array([0, 11_165]), np.array([1, 0.8])
    )
    example = tf.train.Example.FromString(record_format.encode_example(record))
    feature = example.features.feature
    assert list(feature["label/index"].int64_list.value) == [0, 11_165]
    assert np.allclose(feature["label/confidence"].float_list.value, [1, 0.8])
    assert feature["name"].bytes_list.value[0] == b"a b"
    assert (feature["width"].int64_list.value[0], feature["height"].int64_list.value[0]) == (7, 5)


def test_round_trip_from_a_download_split(download: Path, tmp_path: Path) -> None:
    source = records.split_source(download / "train", MINI_CLASSES)
    index = record_writer.write_split(
        source, tmp_path / "a", "train", MINI_CLASSES, min_shards=3, seed=1, workers=2
    )
    assert len(index.shards) == 3 and index.records == len(source) == TINY.num_train
    assert sorted(s.records for s in index.shards) == [13, 13, 14]
    got = {}
    for path in index.paths:
        for schema, record in record_reader.read_records(path, num_classes=MINI_CLASSES):
            assert schema == record_format.SPARSE
            got[record.name] = record
    assert set(got) == set(source.names)
    for i, name in enumerate(source.names):
        record = got[name]
        assert record.image == source.paths[i].read_bytes()
        assert (record.width, record.height) == Image.open(source.paths[i]).size
        indices, confidences = source.labels.labels(i)
        assert record.indices.tolist() == indices.tolist()
        assert record.confidences.tolist() == confidences.tolist()
    counts = source.labels.images_per_class(MINI_CLASSES)
    assert list(index.images_per_class) == counts.tolist()
    assert sum(s.labels for s in index.shards) == source.labels.num_labels
    assert shard_index.SplitIndex.load(tmp_path / "a") == index
    assert not index.single_label


def test_order_is_fixed_by_the_seed(download: Path, tmp_path: Path) -> None:
    source = records.split_source(download / "train", MINI_CLASSES)

    def write(name: str, seed: int, workers: int) -> shard_index.SplitIndex:
        return record_writer.write_split(
            source, tmp_path / name, "train", MINI_CLASSES, min_shards=2, seed=seed,
            workers=workers,
        )  # fmt: skip

    a, b, c = write("a", 3, 2), write("b", 3, 1), write("c", 4, 1)
    assert [p.read_bytes() for p in a.paths] == [p.read_bytes() for p in b.paths]
    names = [[r.name for _, r in record_reader.read_records(p)] for p in (a.paths[0], c.paths[0])]
    assert names[0] != names[1]


def test_single_label_target_split(download: Path, tmp_path: Path) -> None:
    source = records.split_source(download / "target_train", 2)
    index = record_writer.write_split(source, tmp_path, "target_train", 2, min_shards=8)
    assert index.single_label and len(index.shards) == 6  # never more shards than records
    assert sorted(index.images_per_class) == [3, 3]


def test_manifest_source_takes_ok_rows(tmp_path: Path) -> None:
    image = tmp_path / "img" / "a.jpg"
    image.parent.mkdir()
    Image.new("RGB", (6, 4), "red").save(image)
    rows = [
        {"key": "http://x/a.jpg", "status": "ok", "path": "img/a.jpg", "labels": {"3": 0.9}},
        {"key": "http://x/b.jpg", "status": "failed", "error": "404"},
        {"key": "http://x/c.jpg", "status": "ok", "path": "img/a.jpg", "labels": [[1, 1.0]]},
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = record_writer.from_manifest(manifest, 5)
    assert source.names == ["http://x/a.jpg", "http://x/c.jpg"]
    assert source.paths == [image, image]
    assert source.labels.labels(0)[0].tolist() == [3]
    index = record_writer.write_split(source, tmp_path / "out", "train", 5, min_shards=1)
    (_, record), (_, second) = record_reader.read_records(index.paths[0])
    assert {record.name, second.name} == set(source.names) and record.width == 6
    manifest.write_text(json.dumps({**rows[0], "labels": {"9": 1}}) + "\n")
    with pytest.raises(ValueError, match=r"manifest.jsonl:1: class 9; expected 0..4"):
        record_writer.from_manifest(manifest, 5)


def test_missing_images_and_non_jpeg_are_refused(tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(png)
    (tmp_path / "labels.txt").write_text("a.png\t0:1\nmissing.jpg\t1\n")
    with pytest.raises(FileNotFoundError, match="1 image files missing"):
        record_writer.write_split(records.split_source(tmp_path, 2), tmp_path / "o", "train", 2)
    (tmp_path / "labels.txt").write_text("a.png\t0:1\n")
    with pytest.raises(record_format.RecordError, match=r"a.png: not a JPEG"):
        record_writer.write_split(records.split_source(tmp_path, 2), tmp_path / "o", "train", 2)
    assert not list((tmp_path / "o").iterdir())  # nothing half-written under a final name


def test_a_shard_killed_mid_write_is_never_visible(tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8), "blue").save(image)
    fifo = tmp_path / "never.jpg"
    os.mkfifo(fifo)  # reading it blocks: the writer stops in the middle of the shard
    items = [("a", str(image), [1], [1.0])] * 50 + [("b", str(fifo), [1], [1.0])]
    script = (
        "import sys, numpy as np; from mlimages.input import record_writer; "
        f"items = [(n, p, np.array(i), np.array(c, 'f4')) for n, p, i, c in {items!r}]; "
        f"record_writer.write_shard({str(tmp_path / 'x.tfrecord')!r}, items)"
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".x.tfrecord.tmp*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert process.poll() is None, "the writer should be blocked on the FIFO"
        process.kill()
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    assert not (tmp_path / "x.tfrecord").exists()
    (partial,) = tmp_path.glob(".x.tfrecord.tmp*")
    assert partial.stat().st_size > 0
    assert not list(tmp_path.glob("*.tfrecord"))


def _shard(tmp_path: Path, n: int = 4) -> Path:
    path = tmp_path / "s.tfrecord"
    image = tmp_path / "a.jpg"
    Image.new("RGB", (8, 6), "green").save(image)
    record_writer.write_shard(
        path, [(f"r{i}", str(image), np.array([i]), np.ones(1, "f4")) for i in range(n)]
    )
    return path


def test_a_flipped_byte_names_the_shard_and_the_record(tmp_path: Path) -> None:
    path = _shard(tmp_path)
    frames = list(record_format.iter_frames(path))
    assert [p for p, _, _ in frames] == [0, 1, 2, 3]
    data = bytearray(path.read_bytes())
    _, offset, body = frames[2]
    data[offset + 12 + len(body) // 2] ^= 0x01  # inside record 2's data
    path.write_bytes(bytes(data))
    with pytest.raises(record_format.RecordError) as error:
        list(record_reader.read_records(path))
    assert f"s.tfrecord: record 2 (byte offset {offset})" in str(error.value)
    assert "CRC mismatch in the data" in str(error.value)
    with pytest.raises(record_format.RecordError, match="s.tfrecord: record 2"):
        record_reader.verify([path])
    data[offset + 12 + len(body) // 2] ^= 0x01
    data[frames[1][1] + 3] ^= 0x10  # record 1's length
    path.write_bytes(bytes(data))
    with pytest.raises(
        record_format.RecordError, match=r"s.tfrecord: record 1 .*CRC mismatch in the len"
    ):
        record_reader.verify([path])


def test_truncated_shard_is_reported(tmp_path: Path) -> None:
    path = _shard(tmp_path)
    frames = list(record_format.iter_frames(path))
    path.write_bytes(path.read_bytes()[: frames[3][1] + 20])
    with pytest.raises(record_format.RecordError, match=r"s.tfrecord: record 3 .*truncated record"):
        record_reader.verify([path])


def test_steps_per_epoch_are_exact_per_worker() -> None:
    shards = tuple(shard_index.ShardInfo(f"s{i}", n, 1, n) for i, n in enumerate([5, 5, 4, 4, 4]))
    index = shard_index.SplitIndex(
        Path("."), "train", record_format.SPARSE, 3, False, 0, shards, (1, 1, 1)
    )
    assert index.records == 22
    assert index.steps_per_epoch(4) == 5
    assert index.worker_records(2) == [13, 9]
    assert index.steps_per_epoch(4, num_workers=2) == 4  # the worker with 9 records decides
    with pytest.raises(ValueError, match="at most one worker a shard"):
        index.worker_records(6)
    with pytest.raises(ValueError, match="does not split"):
        index.steps_per_epoch(5, num_workers=2)


def test_records_stage_writes_reuses_and_reports(download: Path, runs: Path) -> None:
    overrides = {f"synth.{k}": v for k, v in TINY.model_dump().items()}
    params = load_params("smoke", {**overrides, "records.min_shards": 2})
    (params.run_dir).mkdir(parents=True)
    (params.run_dir / "download").symlink_to(download)
    first = records.run_records_stage(params)
    assert set(first["splits"]) == set(records.SPLITS)
    assert first["splits"]["train"]["records"] == 40 and not first["splits"]["train"]["reused"]
    assert first["splits"]["target_val"]["single_label"]
    novel = first["splits"]["novel_train"]
    assert novel["num_classes"] == TINY.novel_classes and novel["single_label"]
    assert novel["records"] == TINY.novel_classes * TINY.target_train_per_class
    out = params.run_dir / "records"
    assert {"metrics.json", "params.yaml", "shards.csv"} <= {p.name for p in out.iterdir()}
    index = records.split_index(params.run_dir, "train")
    assert index.num_classes == mini_taxonomy().num_classes and len(index.shards) == 2
    second = records.run_records_stage(params)
    assert second["splits"]["train"]["reused"]


def test_records_cli(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard = shared / "tfrecords" / "1.tfrecords"
    assert cli.main(["records", "inspect", str(shard), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in printed] == ["im_0.jpeg", "im_1.jpeg"]
    assert printed[0] == {
        "name": "im_0.jpeg",
        "width": 800,
        "height": 600,
        "labels": {"5170": 0.9, "5177": 0.9},
    }
    assert cli.main(["records", "inspect", str(shared / "NOTICE.md")]) == 2
