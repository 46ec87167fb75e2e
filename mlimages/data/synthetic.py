"""Mini ML-Images: a seeded miniature of the database, written in the authors' formats.

No real image can be fetched on a fresh machine, and the full study needs a cluster, so the
default profile runs on this. It keeps what the paper's mechanisms depend on:

- Classes: a real sub-forest of the authors' dictionary, several hundred classes 15 edges
  deep at most (`mlimages.data.miniforest`, vendored as `mlimages/data/mini_forest.tsv`).
- The hierarchy in the pixels: each branching level of a class's path adds one visual
  attribute (`mlimages.data.appearance`), so relatives look alike.
- Scenes of 1..`max_objects` objects on a background. The backgrounds are labelled with the
  authors' `matter` classes sky, sand and water; the objects are leaves. Labels are closed
  over ancestors at the authors' confidences (0.8/0.9/1.0), with noise on a share of the
  training images and an unclosed share listed without ancestors, as published.
- The long tail: the leaves are ranked by a seeded permutation and every object draws its
  leaf with p(rank) proportional to rank^-a, a = `tail_exponent`, once `tail_floor` objects
  of every leaf are placed (so each leaf is in a few training images at least). The default
  a = 0.95 is the least-squares slope of log images against log rank of the paper's
  images-per-class figure (digitised) over ranks 1,000-9,500, the bulk of its 11,166
  classes where leaves dominate; the figure's steeper head (up to a = 1.7 from rank 20) is
  ancestors' counts, which the closure here produces by itself. A power law through the
  paper's two summary numbers (13,843 images a class on average, 10,505 classes over 100
  images) would give a = 1.42, far steeper than the bulk. A batch holds only part of the
  leaves: the adaptive loss's streak counters see absences, as at scale.
- The target task (the miniature's ImageNet): single-object images of `target_classes`
  pretraining leaves from the frequent-to-middle part of the tail, one subtree after the
  other, generated apart from the pretraining images (an optional small distractor).
- The novel task (`novel_classes` > 0): the same kind of task on other leaves of the band.
  Pretraining may drop their images (`pretrain.hold_out_novel`, the novel-classes experiment)
  so that their ancestors are seen only through other leaves; the other images stay the same.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from mlimages.config.sections import SynthParams
from mlimages.core.atomic import atomic_dir, dumps_json, write_text_atomic
from mlimages.core.progress import quiet
from mlimages.data.appearance import Look, looks, sprite
from mlimages.data.labels.read import read_label_list
from mlimages.data.labels.table import LabelTable
from mlimages.data.miniforest import ANCHORS, BACKGROUNDS, anchor_of, mini_forest
from mlimages.data.taxonomy import Taxonomy, load_dictionary

CONFIDENCES = (0.8, 0.9, 1.0)
CONFIDENCE_PROBS = (0.2, 0.3, 0.5)
TARGET_BAND = (0.05, 0.5)  # target leaves come from these quantiles of the frequency ranking
OBJECT_EXTENT = (0.48, 0.8)  # drawing side / image side; the body covers less than that
DISTRACTOR_EXTENT = (0.25, 0.35)
DISTRACTOR_PROB = 0.3
SPLIT_CODES = {
    "train": 0, "val": 1, "target_train": 2, "target_val": 3, "novel_train": 4, "novel_val": 5,
}  # fmt: skip
TASKS = ("target", "novel")  # the single-label tasks, each in its own folder


def mini_taxonomy() -> Taxonomy:
    """The miniature's classes (the vendored sub-forest of the authors' dictionary)."""
    return mini_forest()


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

    def task_dir(self, task: str) -> Path:
        """`<root>/target` or `<root>/novel`: an ImageNet-like tree of a single-label task."""
        if task not in TASKS:
            raise ValueError(f"task {task!r}; expected one of {', '.join(TASKS)}")
        return self.root / task

    def task_dictionary(self, task: str) -> Path:
        return self.task_dir(task) / "dictionary.txt"

    def task_list(self, task: str, split: str) -> Path:
        return self.task_dir(task) / f"{split}_list.txt"

    @property
    def target_dir(self) -> Path:
        return self.task_dir("target")

    @property
    def target_dictionary(self) -> Path:
        return self.task_dictionary("target")

    def target_list(self, split: str) -> Path:
        return self.task_list("target", split)

    @property
    def novel_dir(self) -> Path:
        return self.task_dir("novel")

    @property
    def novel_dictionary(self) -> Path:
        return self.task_dictionary("novel")

    def novel_list(self, split: str) -> Path:
        return self.task_list("novel", split)

    @property
    def has_novel(self) -> bool:
        """Whether this miniature was generated with a novel task."""
        return self.novel_dictionary.is_file()

    @property
    def info(self) -> dict:
        return json.loads((self.root / "synth.json").read_text())


@dataclass(frozen=True)
class Design:
    """What the parameters decide before any pixel: classes, looks, the tail, the target."""

    taxonomy: Taxonomy
    looks: list[Look]
    ranked: np.ndarray  # object leaves (class indices), most frequent first
    probabilities: np.ndarray  # draw probability of ranked[r]
    backgrounds: np.ndarray  # class indices of sky, sand, water
    target: np.ndarray  # class indices of the target task's classes, label order
    novel: np.ndarray  # class indices of the novel task's classes, label order (may be empty)

    def classes(self, task: str) -> np.ndarray:
        """The class indices of a single-label task (`target` or `novel`), label order."""
        return self.target if task == "target" else self.novel


@dataclass(frozen=True)
class Scene:
    """One image: its objects (leaf indices), its background and its label row."""

    objects: tuple[int, ...]
    background: int
    labels: list[tuple[int, float]]


def tail_probabilities(leaves: int, exponent: float) -> np.ndarray:
    """p(rank) proportional to rank^-a, ranks 1..leaves."""
    weights = np.arange(1, leaves + 1, dtype=float) ** -exponent
    return weights / weights.sum()


def design(params: SynthParams) -> Design:
    """The seeded choices shared by every split (its own random stream)."""
    taxonomy = mini_taxonomy()
    rng = np.random.default_rng([params.seed, 0])
    backgrounds = np.array([taxonomy.index_of_wnid[w] for w in BACKGROUNDS])
    leaves = np.setdiff1d(taxonomy.leaves, backgrounds)
    ranked = leaves[rng.permutation(len(leaves))]
    target = choose_target(taxonomy, ranked, params.target_classes)
    # No draw: the novel leaves follow from the ranking, so every other stream is unchanged.
    novel = choose_target(taxonomy, ranked, params.novel_classes, exclude=target)
    probabilities = tail_probabilities(len(ranked), params.tail_exponent)
    return Design(taxonomy, looks(taxonomy), ranked, probabilities, backgrounds, target, novel)


def choose_target(
    taxonomy: Taxonomy, ranked: np.ndarray, k: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """`k` leaves from the TARGET_BAND of the ranking, one subtree (anchor) after the other,
    the most frequent first within each: pretraining has seen them, and they are spread.
    With `exclude` (the target's leaves) the novel task's: the same band without them, so
    both tasks sit in the same part of the tail."""
    lo, hi = (int(q * len(ranked)) for q in TARGET_BAND)
    band = ranked[lo:hi]
    key = "synth.target_classes"
    if exclude is not None:
        band = band[~np.isin(band, exclude)]
        key = "synth.novel_classes"
    if k > len(band):
        left = "" if exclude is None else f", less the {len(exclude)} target classes"
        raise ValueError(
            f"{key} = {k}; expected at most {len(band)} (the leaves ranked "
            f"{lo + 1}..{hi} of {len(ranked)}{left})"
        )
    anchors = anchor_of(taxonomy)[band]
    queues = [list(band[anchors == a]) for a in range(len(ANCHORS))]
    chosen: list[int] = []
    while len(chosen) < k:
        for queue in queues:
            if queue and len(chosen) < k:
                chosen.append(int(queue.pop(0)))
    return np.array(chosen, dtype=ranked.dtype)


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
    with atomic_dir(out) as tmp:
        plan = design(params)
        plan.taxonomy.write(tmp / "dictionary_and_semantic_hierarchy.txt")
        tasks = [task for task in TASKS if len(plan.classes(task))]
        splits = {
            "train": scenes(params, plan, "train"),
            "val": scenes(params, plan, "val"),
            **{
                f"{task}_{split}": target_scenes(params, plan, f"{task}_{split}")
                for task in tasks
                for split in ("train", "val")
            },
        }
        total = sum(len(s) for s in splits.values())
        with tqdm(total=total, desc="mini ML-Images", unit="img", disable=quiet(progress)) as bar:
            for split in ("train", "val"):
                _write_multilabel_split(tmp, out.resolve(), split, splits[split], params, plan, bar)
            for task in tasks:
                for split in ("train", "val"):
                    _write_target_split(
                        tmp, split, splits[f"{task}_{split}"], params, plan, bar, task
                    )
        for task in tasks:
            _write_target_dictionary(tmp, plan, task)
        info = {
            "params": params.model_dump(),
            "counts": {split: len(s) for split, s in splits.items()},
            "classes": plan.taxonomy.num_classes,
            "pretrain_leaves": [plan.taxonomy.wnids[i] for i in plan.ranked],
            "target_classes": [plan.taxonomy.wnids[i] for i in plan.target],
            "novel_classes": [plan.taxonomy.wnids[i] for i in plan.novel],
            "backgrounds": list(BACKGROUNDS),
            "tail": {"exponent": params.tail_exponent, "floor": params.tail_floor},
        }
        write_text_atomic(tmp / "synth.json", dumps_json(info, indent=2))
    return MiniDataset(out)


def scenes(params: SynthParams, plan: Design, split: str) -> list[Scene]:
    """The multi-label split's images as objects and label rows, without pixels (cheap)."""
    n = params.num_train if split == "train" else params.num_val
    rng = np.random.default_rng([params.seed, 1, SPLIT_CODES[split]])
    per_image = rng.integers(1, params.max_objects + 1, size=n)
    floor = params.tail_floor if split == "train" else 0
    slots = _leaf_slots(int(per_image.sum()), floor, plan, rng)
    noisy = split == "train"
    leaves = set(plan.ranked.tolist())
    out = []
    for objects in np.split(slots, np.cumsum(per_image)[:-1]):
        background = int(plan.backgrounds[rng.integers(len(plan.backgrounds))])
        labels = {background: _confidence(rng)}
        for leaf in objects.tolist():
            labels[leaf] = max(_confidence(rng), labels.get(leaf, 0.0))
        if noisy and rng.random() < params.label_noise:
            _corrupt(labels, leaves, plan.ranked, rng)
        closed = not noisy or rng.random() >= params.unclosed_fraction
        row = _close(labels, plan.taxonomy) if closed else sorted(labels.items())
        out.append(Scene(tuple(objects.tolist()), background, row))
    return out


def _leaf_slots(total: int, floor: int, plan: Design, rng: np.random.Generator) -> np.ndarray:
    """One leaf per object: `floor` of every leaf where they fit (at most half the objects),
    the rest drawn from the tail, shuffled."""
    floor = min(floor, total // (2 * len(plan.ranked)))
    fixed = np.repeat(plan.ranked, floor)
    drawn = rng.choice(plan.ranked, size=total - len(fixed), p=plan.probabilities)
    slots = np.concatenate([fixed, drawn])
    rng.shuffle(slots)
    return slots


def target_scenes(params: SynthParams, plan: Design, split: str) -> list[Scene]:
    """Single-label images of `split` (`target_*` or `novel_*`): the class's object,
    sometimes a small distractor from the tail; the label row holds the task's label
    (0..k-1), not a class index. Both tasks have the target's images a class."""
    task, _, part = split.partition("_")
    per_class = params.target_train_per_class if part == "train" else params.target_val_per_class
    rng = np.random.default_rng([params.seed, 1, SPLIT_CODES[split]])
    out = []
    for label, leaf in enumerate(plan.classes(task).tolist()):
        for _ in range(per_class):
            background = int(plan.backgrounds[rng.integers(len(plan.backgrounds))])
            objects = [leaf]
            if rng.random() < DISTRACTOR_PROB:
                other = leaf
                while other == leaf:
                    other = int(rng.choice(plan.ranked, p=plan.probabilities))
                objects.append(other)
            out.append(Scene(tuple(objects), background, [(label, 1.0)]))
    return out


def _write_multilabel_split(
    root: Path,
    final_root: Path,
    split: str,
    items: list[Scene],
    params: SynthParams,
    plan: Design,
    bar: tqdm,
) -> None:
    """Images and both lists; URLs point where `root` will be moved."""
    rng = np.random.default_rng([params.seed, 2, SPLIT_CODES[split]])
    names, urls = [], []
    for i, scene in enumerate(items):
        name = f"{split}_{i:06d}.jpg"
        path = root / "images" / split / f"{i // 1000:03d}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _draw_scene(params.image_size, scene, plan, rng, distractor=False).save(
            path, format="JPEG", quality=params.jpeg_quality
        )
        names.append(name)
        urls.append((final_root / path.relative_to(root)).as_uri())
        bar.update()
    rows = [s.labels for s in items]
    LabelTable.from_rows(urls, rows).write(root / f"{split}_urls.txt")
    LabelTable.from_rows(names, rows).write(root / f"{split}_im_list.txt")


def _write_target_split(
    root: Path,
    split: str,
    items: list[Scene],
    params: SynthParams,
    plan: Design,
    bar: tqdm,
    task: str = "target",
) -> None:
    """An ImageNet-like tree `<task>/<split>/<wnid>/<wnid>_<n>.JPEG` and a single-label list."""
    rng = np.random.default_rng([params.seed, 2, SPLIT_CODES[f"{task}_{split}"]])
    keys, seen = [], {}
    for scene in items:
        wnid = plan.taxonomy.wnids[scene.objects[0]]
        n = seen[wnid] = seen.get(wnid, -1) + 1
        key = f"{wnid}/{wnid}_{n}.JPEG"
        path = root / task / split / key
        path.parent.mkdir(parents=True, exist_ok=True)
        _draw_scene(params.image_size, scene, plan, rng, distractor=True).save(
            path, format="JPEG", quality=params.jpeg_quality
        )
        keys.append(key)
        bar.update()
    rows = [s.labels for s in items]
    LabelTable.from_rows(keys, rows).write(root / task / f"{split}_list.txt")


def _write_target_dictionary(root: Path, plan: Design, task: str = "target") -> None:
    """The ILSVRC dictionary format: index, then every word of the names tab-separated."""
    lines, wnids = [], []
    for label, leaf in enumerate(plan.classes(task).tolist()):
        words = plan.taxonomy.names[leaf].replace(",", " ").split()
        lines.append("\t".join([str(label), *words]))
        wnids.append(plan.taxonomy.wnids[leaf])
    write_text_atomic(root / task / "dictionary.txt", "\n".join(lines) + "\n")
    write_text_atomic(root / task / "wnids.txt", "\n".join(wnids) + "\n")


def _confidence(rng: np.random.Generator) -> float:
    return float(rng.choice(CONFIDENCES, p=CONFIDENCE_PROBS))


def _corrupt(
    labels: dict[int, float], leaves: set[int], ranked: np.ndarray, rng: np.random.Generator
) -> None:
    """Annotation noise: drop a present leaf, or add an absent one at the lowest confidence."""
    present = [c for c in labels if c in leaves]
    if present and rng.random() < 0.5:
        del labels[present[rng.integers(len(present))]]
        return
    extra = int(ranked[rng.integers(len(ranked))])
    if extra not in labels:
        labels[extra] = CONFIDENCES[0]


def _close(labels: dict[int, float], taxonomy: Taxonomy) -> list[tuple[int, float]]:
    closed: dict[int, float] = {}
    for cls, conf in labels.items():
        for ancestor in taxonomy.ancestors(cls, include_self=True):
            closed[ancestor] = max(conf, closed.get(ancestor, 0.0))
    return sorted(closed.items())


# --- pixels ---------------------------------------------------------------------------


def _draw_scene(
    size: int, scene: Scene, plan: Design, rng: np.random.Generator, distractor: bool
) -> Image.Image:
    """The background, then each object's sprite resized, colour-jittered and pasted."""
    image = Image.fromarray(_background(size, plan.taxonomy.wnids[scene.background], rng))
    for k, leaf in enumerate(scene.objects):
        lo, hi = DISTRACTOR_EXTENT if distractor and k > 0 else OBJECT_EXTENT
        extent = max(4, int(round(rng.uniform(lo, hi) * size)))
        x0, y0 = (int(v) for v in rng.integers(0, size - extent + 1, size=2))
        drawing = np.asarray(sprite(plan.looks[leaf]).resize((extent, extent), Image.BILINEAR))
        rgb = np.clip(drawing[..., :3] + rng.integers(-15, 16, size=3), 0, 255).astype(np.uint8)
        image.paste(Image.fromarray(rgb), (x0, y0), Image.fromarray(drawing[..., 3]))
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
    noise = rng.normal(0, 10, size=(size, size, 1))
    return np.clip(np.broadcast_to(base + noise, (size, size, 3)), 0, 255).astype(np.uint8)


# --- statistics -----------------------------------------------------------------------


def statistics(dataset: MiniDataset, global_batch: int) -> dict:
    """The figures that say whether the paper's mechanisms act on the miniature as at scale,
    from its files, plus the image counts."""
    taxonomy = load_dictionary(dataset.dictionary)
    train = read_label_list(dataset.url_list("train"), num_classes=taxonomy.num_classes)
    return {
        **label_statistics(taxonomy, train, global_batch),
        "images": dataset.info["counts"],
    }


def label_statistics(taxonomy: Taxonomy, train: LabelTable, global_batch: int) -> dict:
    """Hierarchy and training-list figures; labels as listed (`unclosed_fraction` unclosed).

    `leaf_batch_presence` is exact, not sampled: the mean over the hierarchy's leaves of the
    probability that a uniformly drawn batch of `global_batch` training images (without
    replacement) holds the leaf, 1 - C(N - n, B) / C(N, B) for a leaf in n of N images.
    """
    tax = taxonomy.stats()
    per_class = train.images_per_class(taxonomy.num_classes)
    used = per_class[per_class > 0]
    leaves = per_class[taxonomy.leaves]
    return {
        "classes": tax["classes"],
        "leaves": tax["leaves"],
        "max_depth": tax["max_depth"],
        "mean_depth": round(tax["mean_depth"], 3),
        "train_images": len(train),
        "labels_per_image_mean": round(float(train.labels_per_image().mean()), 3),
        "classes_used": int(len(used)),
        "images_per_class": {
            "min": int(used.min()),
            "median": float(np.median(used)),
            "max": int(used.max()),
            "mean": round(float(used.mean()), 1),
        },
        "leaf_images": {
            "min": int(leaves.min()),
            "median": float(np.median(leaves)),
            "max": int(leaves.max()),
        },
        "classes_over_100_images": int(np.count_nonzero(per_class > 100)),
        "global_batch": global_batch,
        "leaf_batch_presence": round(batch_presence(leaves, len(train), global_batch), 4),
        "leaf_batch_presence_method": "exact, from per-leaf image counts (hypergeometric)",
    }


def batch_presence(counts: np.ndarray, images: int, batch: int) -> float:
    """Mean over classes of P(a random batch of `batch` of `images` images holds the class)."""
    if batch >= images:
        return float(np.mean(counts > 0))

    def log_choose(n: float, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

    total = log_choose(images, batch)
    absent = [
        math.exp(log_choose(images - n, batch) - total) if images - n >= batch else 0.0
        for n in counts.tolist()
    ]
    return float(1.0 - np.mean(absent))
