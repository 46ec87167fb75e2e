"""Mini ML-Images: a seeded miniature of the database, written in the authors' formats.

No real image can be fetched on a fresh machine, and the full study needs a cluster, so the
default profile runs on this. Its 64 classes are a real sub-forest of the authors'
dictionary (real WordNet ids, names and parents, kept in the authors' index order, so
`water` precedes its parent `fluid` as 9741 precedes 10348 there). Each object class is a
drawable glyph: the parent decides the shape (ball = disc, boat = hull and sail, car = body
and wheels, flower = petals) and the leaf the colour, so the hierarchy is visible in the
pixels. Backgrounds are the `matter` classes sky, sand and water.

The single-label target task (the miniature's ImageNet) uses the leaves that pretraining
never shows: known shapes in colour combinations never seen together, few images a class,
so that what pretraining learnt can matter.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from mlimages.annotations import LabelTable
from mlimages.atomic import write_text_atomic
from mlimages.params import SynthParams
from mlimages.progress import quiet
from mlimages.taxonomy import Taxonomy

# (wnid, name, parent wnid) in the authors' index order; copied from their dictionary.
MINI_CLASSES: tuple[tuple[str, str, str | None], ...] = (
    ("n00020827", "matter", None),
    ("n00002684", "object, physical object", None),
    ("n14877585", "gas", "n00020827"),
    ("n00019613", "substance", "n00020827"),
    ("n09436708", "sky", "n14877585"),
    ("n14580897", "material, stuff", "n00019613"),
    ("n15019030", "sand", "n14580897"),
    ("n00003553", "whole, unit", "n00002684"),
    ("n00021939", "artifact, artefact", "n00003553"),
    ("n00004258", "living thing, animate thing", "n00003553"),
    ("n03575240", "instrumentality, instrumentation", "n00021939"),
    ("n03294048", "equipment", "n03575240"),
    ("n03094503", "container", "n03575240"),
    ("n03100490", "conveyance, transport", "n03575240"),
    ("n03414162", "game equipment", "n03294048"),
    ("n02778669", "ball", "n03414162"),
    ("n04254680", "soccer ball", "n02778669"),
    ("n02882301", "bowling ball, bowl", "n02778669"),
    ("n02839351", "billiard ball", "n02778669"),
    ("n03134739", "croquet ball", "n02778669"),
    ("n03131967", "cricket ball", "n02778669"),
    ("n04409515", "tennis ball", "n02778669"),
    ("n03445777", "golf ball", "n02778669"),
    ("n04118538", "rugby ball", "n02778669"),
    ("n04576211", "wheeled vehicle", "n03094503"),
    ("n04170037", "self-propelled vehicle", "n04576211"),
    ("n03791235", "motor vehicle, automotive vehicle", "n04170037"),
    ("n02958343", "car, auto, automobile, machine, motorcar", "n03791235"),
    (
        "n02814533",
        "beach wagon, station wagon, wagon, estate car, beach waggon, station waggon, waggon",
        "n02958343",
    ),
    ("n03777568", "Model T", "n02958343"),
    ("n03770679", "minivan", "n02958343"),
    ("n03100240", "convertible", "n02958343"),
    ("n02930766", "cab, hack, taxi, taxicab", "n02958343"),
    ("n04037443", "racer, race car, racing car", "n02958343"),
    ("n03498781", "hatchback", "n02958343"),
    ("n04097373", "roadster, runabout, two-seater", "n02958343"),
    ("n04524313", "vehicle", "n03100490"),
    ("n03125870", "craft", "n04524313"),
    ("n04530566", "vessel, watercraft", "n03125870"),
    ("n02858304", "boat", "n04530566"),
    ("n03662601", "lifeboat", "n02858304"),
    ("n03447447", "gondola", "n02858304"),
    ("n04495843", "tugboat, tug, towboat, tower", "n02858304"),
    ("n04024983", "punt", "n02858304"),
    ("n03329663", "ferry, ferryboat", "n02858304"),
    ("n02947660", "canal boat, narrow boat, narrowboat", "n02858304"),
    ("n03344393", "fireboat", "n02858304"),
    ("n00004475", "organism, being", "n00004258"),
    ("n00017222", "plant, flora, plant life", "n00004475"),
    ("n13083586", "vascular plant, tracheophyte", "n00017222"),
    ("n11552386", "spermatophyte, phanerogam, seed plant", "n13083586"),
    ("n11665372", "angiosperm, flowering plant", "n11552386"),
    ("n11669921", "flower", "n11665372"),
    ("n11736694", "nigella", "n11669921"),
    ("n12008487", "black-eyed Susan, Rudbeckia hirta, Rudbeckia serotina", "n11669921"),
    (
        "n11955896",
        "mistflower, mist-flower, ageratum, Conoclinium coelestinum, Eupatorium coelestinum",
        "n11669921",
    ),
    ("n12879527", "calceolaria, slipperwort", "n11669921"),
    (
        "n12884260",
        "toadflax, butter-and-eggs, wild snapdragon, devil's flax, Linaria vulgaris",
        "n11669921",
    ),
    ("n12034141", "zinnia, old maid, old maid flower", "n11669921"),
    ("n12026476", "Easter daisy, stemless daisy, Townsendia Exscapa", "n11669921"),
    ("n12833149", "African violet, Saintpaulia ionantha", "n11669921"),
    ("n07935504", "water", "n14939445"),
    ("n14939445", "fluid", "n00020827"),
    ("n03603594", "junk", "n02858304"),
)

# Object groups: parent wnid -> (glyph, leaves). The first PRETRAIN_LEAVES leaves of each
# group appear in pretraining; the rest are the target task's classes.
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "n02778669": ("ball", ("n04409515", "n03445777", "n04254680", "n02839351", "n02882301",
                           "n03131967", "n03134739", "n04118538")),
    "n02858304": ("boat", ("n03662601", "n03447447", "n04495843", "n03329663", "n02947660",
                           "n03603594", "n03344393", "n04024983")),
    "n02958343": ("car", ("n03770679", "n03100240", "n02930766", "n04037443", "n03498781",
                          "n04097373", "n02814533", "n03777568")),
    "n11669921": ("flower", ("n12034141", "n12008487", "n12833149", "n12026476", "n12879527",
                             "n11736694", "n12884260", "n11955896")),
}  # fmt: skip
PRETRAIN_LEAVES = 5
BACKGROUNDS = ("n09436708", "n15019030", "n07935504")  # sky, sand, water
PALETTE = (
    (220, 40, 40), (40, 170, 60), (40, 70, 220), (240, 210, 40),
    (200, 50, 200), (40, 200, 210), (245, 130, 30), (25, 25, 25),
)  # fmt: skip
CONFIDENCES = (0.8, 0.9, 1.0)
CONFIDENCE_PROBS = (0.2, 0.3, 0.5)


def mini_taxonomy() -> Taxonomy:
    index = {wnid: i for i, (wnid, _, _) in enumerate(MINI_CLASSES)}
    records = [(w, n, index[p] if p else -1) for w, n, p in MINI_CLASSES]
    return Taxonomy.from_records(records, source="mini ML-Images")


@dataclass(frozen=True)
class Glyph:
    """One drawable leaf class: its group's shape in its own colour."""

    wnid: str
    shape: str
    color: tuple[int, int, int]


def glyphs() -> tuple[list[Glyph], list[Glyph]]:
    """(pretraining leaves, target leaves); leaf k of group g gets colour (k + 2g) mod 8."""
    pretrain, target = [], []
    for g, (shape, leaves) in enumerate(GROUPS.values()):
        for k, wnid in enumerate(leaves):
            glyph = Glyph(wnid, shape, PALETTE[(k + 2 * g) % len(PALETTE)])
            (pretrain if k < PRETRAIN_LEAVES else target).append(glyph)
    return pretrain, target


@dataclass(frozen=True)
class MiniDataset:
    """Paths of a generated miniature, all in the authors' formats."""

    root: Path

    @property
    def dictionary(self) -> Path:
        return self.root / "dictionary_and_semantic_hierarchy.txt"

    def url_list(self, split: str) -> Path:
        return self.root / f"{split}_urls.txt"

    def file_list(self, split: str) -> Path:
        return self.root / f"{split}_im_list.txt"

    @property
    def target_dir(self) -> Path:
        return self.root / "target"

    @property
    def target_dictionary(self) -> Path:
        return self.target_dir / "dictionary.txt"

    def target_list(self, split: str) -> Path:
        return self.target_dir / f"{split}_list.txt"

    @property
    def info(self) -> dict:
        return json.loads((self.root / "synth.json").read_text())


def ensure_miniature(params: SynthParams, out: Path, progress: bool | None = None) -> MiniDataset:
    """Reuse `out` when it holds a miniature made with the same parameters, else regenerate."""
    dataset = MiniDataset(out)
    marker = out / "synth.json"
    if marker.is_file() and json.loads(marker.read_text()).get("params") == params.model_dump():
        return dataset
    return generate(params, out, progress=progress)


def generate(params: SynthParams, out: Path, progress: bool | None = None) -> MiniDataset:
    """Write the miniature into a temporary folder, then move it to `out` complete."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = np.random.default_rng(params.seed)
    taxonomy = mini_taxonomy()
    taxonomy.write(tmp / "dictionary_and_semantic_hierarchy.txt")
    pretrain, target = glyphs()
    if params.target_classes > len(target):
        raise ValueError(
            f"synth.target_classes = {params.target_classes}; expected at most {len(target)}"
        )
    target = target[: params.target_classes]
    counts = {}
    bar = tqdm(
        total=params.num_train
        + params.num_val
        + params.target_classes * (params.target_train_per_class + params.target_val_per_class),
        desc="mini ML-Images",
        unit="img",
        disable=quiet(progress),
    )
    for split, n, noisy in (("train", params.num_train, True), ("val", params.num_val, False)):
        counts[split] = _write_multilabel_split(
            tmp, out.resolve(), split, n, noisy, params, taxonomy, pretrain, rng, bar
        )
    for split, per_class in (
        ("train", params.target_train_per_class),
        ("val", params.target_val_per_class),
    ):
        counts[f"target_{split}"] = _write_target_split(
            tmp, split, per_class, params, target, pretrain, rng, bar
        )
    bar.close()
    _write_target_dictionary(tmp, taxonomy, target)
    info = {
        "params": params.model_dump(),
        "counts": counts,
        "classes": taxonomy.num_classes,
        "pretrain_leaves": [g.wnid for g in pretrain],
        "target_classes": [g.wnid for g in target],
        "backgrounds": list(BACKGROUNDS),
    }
    (tmp / "synth.json").write_text(json.dumps(info, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return MiniDataset(out)


def _write_multilabel_split(
    root: Path,
    final_root: Path,
    split: str,
    n: int,
    noisy: bool,
    params: SynthParams,
    taxonomy: Taxonomy,
    pretrain: list[Glyph],
    rng: np.random.Generator,
    bar: tqdm,
) -> int:
    """Scenes of 1..max_objects objects on a background; URLs point where `root` will be moved."""
    index = taxonomy.index_of_wnid
    names, urls, rows = [], [], []
    for i in range(n):
        background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
        objects = [
            pretrain[k]
            for k in rng.integers(len(pretrain), size=rng.integers(1, params.max_objects + 1))
        ]
        image = _draw_scene(params.image_size, background, objects, rng)
        name = f"{split}_{i:06d}.jpg"
        path = root / "images" / split / f"{i // 1000:03d}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=params.jpeg_quality)
        labels = {index[background]: _confidence(rng)}
        for glyph in objects:
            conf = _confidence(rng)
            labels[index[glyph.wnid]] = max(conf, labels.get(index[glyph.wnid], 0.0))
        if noisy and rng.random() < params.label_noise:
            _corrupt(labels, [index[g.wnid] for g in pretrain], rng)
        closed = noisy is False or rng.random() >= params.unclosed_fraction
        rows.append(_close(labels, taxonomy) if closed else sorted(labels.items()))
        names.append(name)
        urls.append((final_root / path.relative_to(root)).as_uri())
        bar.update()
    LabelTable.from_rows(urls, rows).write(root / f"{split}_urls.txt")
    LabelTable.from_rows(names, rows).write(root / f"{split}_im_list.txt")
    return n


def _write_target_split(
    root: Path,
    split: str,
    per_class: int,
    params: SynthParams,
    target: list[Glyph],
    pretrain: list[Glyph],
    rng: np.random.Generator,
    bar: tqdm,
) -> int:
    """An ImageNet-like tree `target/<split>/<wnid>/<wnid>_<n>.JPEG` and a single-label list."""
    keys, rows = [], []
    for label, glyph in enumerate(target):
        for n in range(per_class):
            background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
            objects = [glyph]
            if rng.random() < 0.3:  # a small distractor, so the task is not colour alone
                objects.append(pretrain[rng.integers(len(pretrain))])
            image = _draw_scene(params.image_size, background, objects, rng)
            key = f"{glyph.wnid}/{glyph.wnid}_{n}.JPEG"
            path = root / "target" / split / key
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, format="JPEG", quality=params.jpeg_quality)
            keys.append(key)
            rows.append([(label, 1.0)])
            bar.update()
    LabelTable.from_rows(keys, rows).write(root / "target" / f"{split}_list.txt")
    return len(keys)


def _write_target_dictionary(root: Path, taxonomy: Taxonomy, target: list[Glyph]) -> None:
    """The ILSVRC dictionary format: index, then every word of the names tab-separated."""
    lines, wnids = [], []
    for label, glyph in enumerate(target):
        words = taxonomy.names[taxonomy.index_of_wnid[glyph.wnid]].replace(",", " ").split()
        lines.append("\t".join([str(label), *words]))
        wnids.append(glyph.wnid)
    write_text_atomic(root / "target" / "dictionary.txt", "\n".join(lines) + "\n")
    write_text_atomic(root / "target" / "wnids.txt", "\n".join(wnids) + "\n")


def _confidence(rng: np.random.Generator) -> float:
    return float(rng.choice(CONFIDENCES, p=CONFIDENCE_PROBS))


def _corrupt(labels: dict[int, float], leaves: list[int], rng: np.random.Generator) -> None:
    """Annotation noise: drop a present leaf, or add an absent one at the lowest confidence."""
    present = [c for c in labels if c in leaves]
    absent = [c for c in leaves if c not in labels]
    if present and (not absent or rng.random() < 0.5):
        del labels[present[rng.integers(len(present))]]
    elif absent:
        labels[absent[rng.integers(len(absent))]] = CONFIDENCES[0]


def _close(labels: dict[int, float], taxonomy: Taxonomy) -> list[tuple[int, float]]:
    closed: dict[int, float] = {}
    for cls, conf in labels.items():
        for ancestor in taxonomy.ancestors(cls, include_self=True):
            closed[ancestor] = max(conf, closed.get(ancestor, 0.0))
    return sorted(closed.items())


def _draw_scene(
    size: int, background: str, objects: list[Glyph], rng: np.random.Generator
) -> Image.Image:
    image = Image.fromarray(_background(size, background, rng))
    draw = ImageDraw.Draw(image)
    for glyph in objects:
        extent = rng.uniform(0.28, 0.5) * size
        x0, y0 = rng.uniform(0, size - extent, size=2)
        jitter = rng.integers(-20, 21, size=3)
        color = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(glyph.color, jitter, strict=True))
        _draw_glyph(draw, glyph.shape, (x0, y0, x0 + extent, y0 + extent), color)
    return image


def _background(size: int, wnid: str, rng: np.random.Generator) -> np.ndarray:
    """Sky: a light-blue gradient; sand: speckled tan; water: dark blue with horizontal waves."""
    y = np.linspace(0, 1, size)[:, None, None]
    if wnid == "n09436708":
        base = np.array([150, 200, 245]) * (1 - 0.25 * y)
    elif wnid == "n15019030":
        base = np.broadcast_to(np.array([214, 190, 140]), y.shape[:1] + (1, 3))
    else:
        waves = 18 * np.sin(np.linspace(0, rng.uniform(6, 12) * np.pi, size))[:, None, None]
        base = np.array([30, 70, 130]) + waves
    noise = rng.normal(0, 10, size=(size, size, 3))
    return np.clip(np.broadcast_to(base, (size, size, 3)) + noise, 0, 255).astype(np.uint8)


def _draw_glyph(
    draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, ...], color: tuple[int, ...]
) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if shape == "ball":
        draw.ellipse(box, fill=color, outline=(240, 240, 240))
    elif shape == "boat":
        draw.polygon(
            [(x0, y0 + 0.65 * h), (x1, y0 + 0.65 * h), (x1 - 0.2 * w, y1), (x0 + 0.2 * w, y1)],
            fill=color,
        )
        draw.polygon(
            [(x0 + 0.5 * w, y0), (x0 + 0.5 * w, y0 + 0.6 * h), (x0 + 0.9 * w, y0 + 0.6 * h)],
            fill=(245, 245, 245),
        )
    elif shape == "car":
        draw.rectangle((x0, y0 + 0.35 * h, x1, y0 + 0.75 * h), fill=color)
        draw.rectangle((x0 + 0.25 * w, y0 + 0.1 * h, x1 - 0.25 * w, y0 + 0.35 * h), fill=color)
        for cx in (x0 + 0.25 * w, x1 - 0.25 * w):
            draw.ellipse(
                (cx - 0.13 * w, y1 - 0.3 * h, cx + 0.13 * w, y1 - 0.04 * h), fill=(20, 20, 20)
            )
    else:  # flower: five petals around a yellow heart
        cx, cy, r = x0 + w / 2, y0 + h / 2, w / 4
        for a in np.linspace(0, 2 * np.pi, 5, endpoint=False):
            px, py = cx + r * np.cos(a), cy + r * np.sin(a)
            draw.ellipse((px - r * 0.9, py - r * 0.9, px + r * 0.9, py + r * 0.9), fill=color)
        draw.ellipse((cx - r * 0.5, cy - r * 0.5, cx + r * 0.5, cy + r * 0.5), fill=(250, 220, 60))
