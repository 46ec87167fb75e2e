from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlimages.cli import main
from mlimages.config.params import load_params
from mlimages.data.appearance import ATTRIBUTES, looks
from mlimages.data.labels.read import read_label_list
from mlimages.data.labels.table import LabelTable
from mlimages.data.miniforest import ANCHORS, BACKGROUNDS, VENDORED, anchor_of, derive
from mlimages.data.synthetic import (
    CONFIDENCES,
    TARGET_BAND,
    design,
    ensure_miniature,
    generate,
    label_statistics,
    mini_taxonomy,
    scenes,
    statistics,
)
from mlimages.data.taxonomy import load_dictionary

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def authors(shared: Path):
    """The authors' dictionary, vendored in tests/data/authors/."""
    return load_dictionary(shared / "dictionary_and_semantic_hierarchy.txt")


@pytest.fixture(scope="module")
def smoke_mini(tmp_path_factory: pytest.TempPathFactory):
    params = load_params("smoke")
    return params, generate(params.synth, tmp_path_factory.mktemp("mini") / "mini")


@pytest.fixture(scope="module")
def default_labels():
    """The default profile's training labels at a fifth of its images (same distribution),
    without pixels."""
    params = load_params("default")
    synth = params.synth.model_copy(update={"num_train": params.synth.num_train // 5})
    plan = design(synth)
    rows = [s.labels for s in scenes(synth, plan, "train")]
    table = LabelTable.from_rows([f"{i}.jpg" for i in range(len(rows))], rows)
    return params, plan, table


def test_vendored_forest_is_rederived_from_the_authors_dictionary(authors) -> None:
    vendored = ROOT / "mlimages" / "data" / VENDORED
    derived = derive(authors)
    assert derived.wnids == mini_taxonomy().wnids
    out = vendored.parent / f".{VENDORED}.check"
    try:
        derived.write(out)
        assert out.read_bytes() == vendored.read_bytes(), "run python -m mlimages.data.miniforest"
    finally:
        out.unlink(missing_ok=True)


def test_forest_is_a_real_subforest_of_the_authors(authors) -> None:
    mini = mini_taxonomy()
    for i, wnid in enumerate(mini.wnids):
        j = authors.index_of_wnid[wnid]
        assert mini.names[i] == authors.names[j]
        parent, expected = mini.parents[i], authors.parents[j]
        assert (parent == -1) == (expected == -1)
        if parent != -1:
            assert mini.wnids[parent] == authors.wnids[expected]
    order = [authors.index_of_wnid[w] for w in mini.wnids]
    assert order == sorted(order), "kept in the authors' index order"
    water = mini.index_of_wnid["n07935504"]
    assert mini.parents[water] > water  # like 9741 -> 10348: a parent listed after its child


def test_forest_size_depth_and_looks() -> None:
    mini = mini_taxonomy()
    stats = mini.stats()
    assert 300 <= stats["classes"] <= 500 and stats["max_depth"] >= 8
    assert all(mini.index_of_wnid[w] in set(mini.leaves.tolist()) for w in BACKGROUNDS)
    found = looks(mini)
    objects = [c for c in mini.leaves.tolist() if mini.wnids[c] not in BACKGROUNDS]
    assert len({found[c] for c in objects}) == len(objects), "every object leaf looks unique"
    for node in range(mini.num_classes):  # siblings differ, children keep the parent's rest
        children = mini.children(node)
        if len(children) == 1:
            assert found[children[0]] == found[node]
        for child in children:
            same = [getattr(found[child], a) == getattr(found[node], a) for a, _ in ATTRIBUTES]
            assert sum(not s for s in same) <= 3


def test_labels_closed_with_confidences_and_unclosed_share(smoke_mini) -> None:
    params, mini = smoke_mini
    taxonomy = load_dictionary(mini.dictionary)
    assert mini.dictionary.read_text().splitlines()[0].startswith("category_index\tcategory_id")
    train = read_label_list(mini.url_list("train"), num_classes=taxonomy.num_classes)
    val = read_label_list(mini.url_list("val"), num_classes=taxonomy.num_classes)
    assert len(train) == params.synth.num_train and len(val) == params.synth.num_val
    assert set(np.unique(train.confidences).astype(float).round(3)) <= set(CONFIDENCES)
    closed = train.close(taxonomy)
    unclosed = np.count_nonzero(closed.labels_per_image() != train.labels_per_image())
    share = params.synth.unclosed_fraction
    assert 0.4 * share * len(train) < unclosed < 2 * share * len(train)
    assert val == val.close(taxonomy)  # validation is clean and closed
    assert train.key_kind() == "url" and train.key(0).startswith("file://")
    files = read_label_list(mini.file_list("train"))
    assert files.key_kind() == "file" and np.array_equal(files.indices, train.indices)


def test_every_listed_image_exists_and_decodes(smoke_mini) -> None:
    params, mini = smoke_mini
    train = read_label_list(mini.url_list("train"))
    for key in train.keys()[:50]:
        with Image.open(Path(key.removeprefix("file://"))) as image:
            assert image.size == (params.synth.image_size, params.synth.image_size)
            assert image.format == "JPEG"


def test_long_tail_and_rarity_within_a_batch(default_labels) -> None:
    params, plan, table = default_labels
    stats = label_statistics(plan.taxonomy, table, params.pretrain.global_batch)
    objects = table.images_per_class(plan.taxonomy.num_classes)[plan.ranked]
    assert objects.min() >= 3, "every leaf in a few training images (the floor)"
    assert objects.max() / np.median(objects) > 20, "a long tail"
    assert 0.15 <= stats["leaf_batch_presence"] <= 0.35
    confidences = np.unique(table.confidences).astype(float).round(3)
    assert set(confidences) <= set(CONFIDENCES)


def test_target_task_inside_pretraining(smoke_mini, default_labels) -> None:
    params, mini = smoke_mini
    target = read_label_list(mini.target_list("train"))
    assert target.key_kind() == "imagenet"
    assert len(target) == params.synth.target_classes * params.synth.target_train_per_class
    assert np.array_equal(np.unique(target.indices), np.arange(params.synth.target_classes))
    assert (target.labels_per_image() == 1).all()
    for key in target.keys():
        assert (mini.target_dir / "train" / key).is_file()
    lines = mini.target_dictionary.read_text().splitlines()
    assert len(lines) == params.synth.target_classes and lines[0].split("\t")[0] == "0"
    wnids = mini.info["target_classes"]
    assert (mini.target_dir / "wnids.txt").read_text().split() == wnids
    assert set(wnids) <= set(mini.info["pretrain_leaves"])
    pretrain_files = {p.read_bytes() for p in (mini.root / "images").rglob("*.jpg")}
    assert not any(p.read_bytes() in pretrain_files for p in mini.target_dir.rglob("*.JPEG"))
    default, plan, table = default_labels
    counts = table.images_per_class(plan.taxonomy.num_classes)
    assert len(plan.target) == default.synth.target_classes
    assert counts[plan.target].min() >= 5, "pretraining has seen every target class"
    anchors = {a for a, _ in ANCHORS}
    spread = {
        next(w for w in anchors if plan.taxonomy.index_of_wnid[w] in plan.taxonomy.ancestors(t))
        for t in plan.target.tolist()
    }
    assert len(spread) >= min(len(anchors), len(plan.target)) // 2


def test_generation_is_deterministic_and_reused(tmp_path: Path, smoke_mini) -> None:
    params, mini = smoke_mini
    again = ensure_miniature(params.synth, tmp_path / "mini")
    # the URL lists name their folder: the file-name lists must be byte for byte the same
    for path in (again.file_list("train"), again.file_list("val"), again.target_list("train")):
        assert path.read_bytes() == (mini.root / path.relative_to(again.root)).read_bytes()
    image = "images/train/000/train_000007.jpg"
    assert (again.root / image).read_bytes() == (mini.root / image).read_bytes()
    stamp = again.file_list("train").stat().st_mtime_ns
    ensure_miniature(params.synth, tmp_path / "mini")
    assert again.file_list("train").stat().st_mtime_ns == stamp  # same parameters: not regenerated
    other = ensure_miniature(params.synth.model_copy(update={"seed": 1}), tmp_path / "mini")
    assert other.file_list("train").read_bytes() != mini.file_list("train").read_bytes()
    assert not list(tmp_path.glob(".*tmp*")), "no temporary folder left behind"


def test_statistics_and_json_cli(tmp_path: Path, smoke_mini, capsys, runs) -> None:
    params, mini = smoke_mini
    stats = statistics(mini, params.pretrain.global_batch)
    assert stats["classes"] == mini_taxonomy().num_classes and stats["max_depth"] >= 8
    argv = ["synth", "--params", "smoke", "--out", str(tmp_path / "m"), "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    keys = {"classes", "leaves", "max_depth", "labels_per_image_mean", "leaf_batch_presence"}
    assert keys <= set(printed) and set(printed["images_per_class"]) >= {"min", "median", "max"}
    assert printed["train"] == params.synth.num_train
    assert printed["labels_per_image_mean"] == stats["labels_per_image_mean"]


def _digests(root: Path) -> dict[str, str]:
    """File digests under `root`, the folder's own path (in the URL lists) neutralised."""
    import hashlib

    return {
        str(f.relative_to(root)): hashlib.sha256(
            f.read_bytes().replace(str(root.resolve()).encode(), b"ROOT")
        ).hexdigest()
        for f in root.rglob("*")
        if f.is_file()
    }


def test_novel_task_is_other_band_leaves_spread_and_drawless(smoke_mini) -> None:
    params, mini = smoke_mini
    k = params.synth.novel_classes
    assert k >= 1
    plan = design(params.synth)
    off = design(params.synth.model_copy(update={"novel_classes": 0}))
    for name in ("ranked", "probabilities", "target", "backgrounds"):
        assert np.array_equal(getattr(plan, name), getattr(off, name)), name  # no extra draw
    assert len(off.novel) == 0 and len(plan.novel) == k
    assert not set(plan.novel.tolist()) & set(plan.target.tolist())
    lo, hi = (int(q * len(plan.ranked)) for q in TARGET_BAND)
    assert set(plan.novel.tolist()) <= set(plan.ranked[lo:hi].tolist())
    assert np.array_equal(design(params.synth).novel, plan.novel)  # deterministic
    wide = design(params.synth.model_copy(update={"novel_classes": len(ANCHORS)}))
    assert np.array_equal(wide.novel[:k], plan.novel), "round-robin: more classes extend it"
    anchors = anchor_of(plan.taxonomy)[wide.novel]
    assert len(set(anchors.tolist())) >= len(ANCHORS) // 2, "spread over the subtrees"
    wnids = [plan.taxonomy.wnids[i] for i in plan.novel]
    assert mini.info["novel_classes"] == wnids and mini.has_novel
    assert (mini.novel_dir / "wnids.txt").read_text().split() == wnids
    assert len(mini.novel_dictionary.read_text().splitlines()) == k
    for split, per_class in (
        ("train", params.synth.target_train_per_class),
        ("val", params.synth.target_val_per_class),
    ):
        table = read_label_list(mini.novel_list(split))
        assert table.key_kind() == "imagenet" and len(table) == k * per_class
        assert np.array_equal(np.unique(table.indices), np.arange(k))
        assert all((mini.novel_dir / split / key).is_file() for key in table.keys())
        assert mini.info["counts"][f"novel_{split}"] == k * per_class
    target = {p.read_bytes() for p in mini.target_dir.rglob("*.JPEG")}
    assert not any(p.read_bytes() in target for p in mini.novel_dir.rglob("*.JPEG"))


def test_the_novel_task_adds_files_and_changes_none(tmp_path: Path, smoke_mini) -> None:
    params, mini = smoke_mini
    without = generate(params.synth.model_copy(update={"novel_classes": 0}), tmp_path / "m")
    assert not without.has_novel and without.info["novel_classes"] == []
    before, after = _digests(without.root), _digests(mini.root)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert changed == ["synth.json"]
    added = set(after) - set(before)
    assert added and all(name.startswith("novel/") for name in added)


def test_too_many_novel_classes_are_refused_by_key() -> None:
    params = load_params("smoke")
    with pytest.raises(ValueError, match=r"synth.novel_classes = 500; expected at most \d+ .*"):
        design(params.synth.model_copy(update={"novel_classes": 500}))
