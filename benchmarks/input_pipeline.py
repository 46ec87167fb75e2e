"""Input pipeline: the full training chain at 224 against decoding alone, and label bytes.

Writes seeded photo-like 400x300 JPEGs (the size DESIGN §6 measured) into our shards, then,
in the same run over the same records: images/s of `pipeline.decode_only_dataset` (parse +
`tf.io.decode_jpeg`) and of `pipeline.train_dataset` at 224 with every augmentation on (and
with `--no-augment` also without). Label bytes per record: ours (sparse) against the
authors' dense schema for 11,166 classes, on the real labels of the authors' 100-row list.
Also printed: the cores the full pipeline needs to feed one GPU training at 2,500 images/s
(the ResNet-101 goal of benchmarks/train_step.py), from its CPU time an image. Exits non-zero
when the full pipeline is under 0.8x of decode-only or the label bytes are not 100x smaller.

    python benchmarks/input_pipeline.py [--images 512] [--passes 3] [--no-augment]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mlimages import records
from mlimages.annotations import LabelTable, read_label_list

NUM_CLASSES = 11_166
SPEED_GOAL = 0.8
LABEL_BYTES_GOAL = 100.0
GPU_IMAGES_PER_S = 2500.0  # one H200 on ResNet-101 (benchmarks/train_step.py --gpu)
# the authors' label list, vendored unchanged for the tests (tests/data/authors/NOTICE.md)
SHARED_LIST = Path(__file__).resolve().parents[1] / "tests/data/authors/train_urls_tiny.txt"


def photo(rng: np.random.Generator, width: int = 400, height: int = 300) -> bytes:
    """Smooth colour fields plus fine texture: about the entropy of a real photo's JPEG."""
    coarse = rng.random((height // 20 + 1, width // 20 + 1, 3)) * 255
    base = np.asarray(
        Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BICUBIC), float
    )
    texture = rng.normal(0, 18, (height, width, 3))
    pixels = np.clip(base + texture, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_records(folder: Path, images: int, seed: int = 0) -> records.SplitIndex:
    rng = np.random.default_rng(seed)
    image_dir = folder / "images"
    image_dir.mkdir(parents=True)
    keys, rows = [], []
    for i in range(images):
        key = f"{i:05d}.jpg"
        (image_dir / key).write_bytes(photo(rng))
        labels = rng.choice(NUM_CLASSES, size=int(rng.integers(1, 18)), replace=False)
        keys.append(key)
        rows.append([(int(c), 0.9) for c in labels])
    LabelTable.from_rows(keys, rows).write(folder / "labels.txt")
    source = records.from_label_list(folder / "labels.txt", image_dir, NUM_CLASSES)
    return records.write_split(source, folder / "records", "bench", NUM_CLASSES, min_shards=4)


def label_bytes() -> dict[str, float]:
    """Mean serialized label bytes a record, both schemas, on the authors' real labels."""
    table = read_label_list(SHARED_LIST, num_classes=NUM_CLASSES)
    ours, legacy = [], []
    for i in range(len(table)):
        indices, confidences = table.labels(i)
        ours.append(len(records.label_features(indices, confidences)))
        legacy.append(
            len(records.label_features(indices, confidences, records.LEGACY_DENSE, NUM_CLASSES))
        )
    return {
        "records": len(table),
        "labels_per_record": table.num_labels / len(table),
        "ours": float(np.mean(ours)),
        "legacy": float(np.mean(legacy)),
        "ratio": float(np.mean(legacy) / np.mean(ours)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--passes", type=int, default=3, help="timed passes; the best counts")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--no-augment", action="store_true", help="also time without it")
    parser.add_argument("--out-json", help="write the figures here too")
    args = parser.parse_args()

    from mlimages import pipeline  # TensorFlow: after the argument check

    with tempfile.TemporaryDirectory() as tmp:
        index = write_records(Path(tmp), args.images)
        datasets = {
            "decode_only": pipeline.decode_only_dataset(index, args.batch),
            "full": pipeline.train_dataset(
                index, args.image_size, args.batch, NUM_CLASSES, shuffle_buffer=256
            ),
        }
        if args.no_augment:
            datasets["no_augment"] = pipeline.train_dataset(
                index, args.image_size, args.batch, NUM_CLASSES, augment=False
            )
        rates = {name: 0.0 for name in datasets}
        cpu = {name: float("inf") for name in datasets}
        for _ in range(args.passes):  # interleaved, so that both see the same machine load
            for name, dataset in datasets.items():
                measured = pipeline.throughput(dataset, args.images)
                rates[name] = max(rates[name], measured["images_per_s"])
                cpu[name] = min(cpu[name], measured["cpu_ms_per_image"])
    speed = rates["full"] / rates["decode_only"]
    labels = label_bytes()
    report = {
        "images_per_s": {k: round(v, 1) for k, v in rates.items()},
        "cpu_ms_per_image": {k: round(v, 3) for k, v in cpu.items()},
        "full_vs_decode_only": round(speed, 3),
        "full_vs_decode_only_by_cpu": round(cpu["decode_only"] / cpu["full"], 3),
        "cores_to_feed_one_gpu": round(cpu["full"] * GPU_IMAGES_PER_S / 1000, 1),
        "speed_goal": SPEED_GOAL,
        "label_bytes": labels,
        "label_bytes_goal": LABEL_BYTES_GOAL,
    }
    print(json.dumps(report, indent=2))
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(report, indent=2) + "\n")
    failed = []
    if speed < SPEED_GOAL:
        failed.append(f"full pipeline at {speed:.2f}x of decode-only; goal >= {SPEED_GOAL}x")
    if labels["ratio"] < LABEL_BYTES_GOAL:
        failed.append(f"label bytes {labels['ratio']:.0f}x smaller; goal >= {LABEL_BYTES_GOAL}x")
    for line in failed:
        print(f"MISSED: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
