"""Subset choice: budgets, floor, cap, subtrees, determinism, coverage and the verb."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlimages.cli import main
from mlimages.config.sections import SubsetParams
from mlimages.data import subset
from mlimages.data.labels.read import read_label_list
from mlimages.data.labels.table import LabelTable
from mlimages.data.synthetic import mini_taxonomy

C = 6  # classes: 0 head, 1-3 middle, 4 rare (3 images), 5 another rare (5 images)


def _table(n: int = 1000, seed: int = 1) -> LabelTable:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        labels = {0: 1.0} if rng.random() < 0.9 else {}
        labels[1 + int(rng.integers(3))] = 0.9
        if i in (10, 500, 900):
            labels[4] = 1.0
        if i in (20, 40, 60, 80, 100):
            labels[5] = 0.8
        rows.append(sorted(labels.items()))
    return LabelTable.from_rows([f"http://h/{i}.jpg" for i in range(n)], rows)


def _choose(table: LabelTable, seed: int = 0, **spec: object) -> LabelTable:
    return subset.choose(table, C, SubsetParams(**spec), seed=seed, max_side=320)


def test_budget_by_images_and_by_disk() -> None:
    table = _table()
    assert len(_choose(table, max_images=50)) == 50
    assert len(_choose(table, max_gb=1e-6, bytes_per_image=100)) == 10
    estimated = subset.estimated_bytes_per_image(320)
    assert 20_000 < estimated < 60_000, "a 320 px photo at quality 90 is tens of kB"
    assert len(_choose(table, max_gb=estimated * 7 / 1e9)) == 7
    assert len(_choose(table, max_images=5000)) == len(table), "never more than the list"


def test_deterministic_for_a_seed() -> None:
    table = _table()
    assert _choose(table, seed=3, max_images=100) == _choose(table, seed=3, max_images=100)
    assert _choose(table, seed=3, max_images=100) != _choose(table, seed=4, max_images=100)


def test_floor_keeps_rare_classes() -> None:
    table = _table()
    plain = _choose(table, max_images=50).images_per_class(C)
    floored = _choose(table, max_images=50, min_per_class=3).images_per_class(C)
    assert plain[4] < 3 or plain[5] < 3, "a uniform draw of 5% loses the rare classes"
    assert floored[4] == 3 and floored[5] >= 3
    assert floored[1:4].min() >= 3
    assert floored.sum() >= 50 and len(_choose(table, max_images=50, min_per_class=3)) == 50


def test_cap_skips_images_whose_classes_are_all_full() -> None:
    table = _table()
    chosen = _choose(table, max_images=600, max_per_class=100)
    counts = chosen.images_per_class(C)
    # an image is taken while one of its classes is under the cap: each image has one
    # middle class, so those stop at the cap, plus the 8 images let in by a rare class
    assert 100 <= counts[1:4].min() and counts[1:4].max() <= 100 + 8
    assert len(chosen) <= 3 * 100 + 8 < len(_choose(table, max_images=600))


def test_subtrees_keep_only_their_labels() -> None:
    taxonomy = mini_taxonomy()
    ball = taxonomy.index_of_wnid["n02778669"]
    soccer = taxonomy.index_of_wnid["n04254680"]
    sky = taxonomy.index_of_wnid["n09436708"]
    rows = [[(soccer, 1.0), (ball, 1.0), (sky, 1.0)], [(sky, 1.0)], [(ball, 0.9)]]
    table = LabelTable.from_rows(["a", "b", "c"], rows)
    chosen = subset.choose(
        table,
        taxonomy.num_classes,
        SubsetParams(subtrees=["n02778669"]),
        seed=0,
        max_side=320,
        taxonomy=taxonomy,
    )
    assert chosen.keys() == ["a", "c"], "an image with no label left is dropped"
    assert sorted(chosen.labels(0)[0].tolist()) == sorted([ball, soccer])
    with pytest.raises(ValueError, match="n99999999"):
        subset.subtree_classes(taxonomy, ["n99999999"])


def test_coverage_table() -> None:
    table = _table()
    chosen = _choose(table, max_images=50, min_per_class=3)
    cover = subset.coverage(table, chosen, C, floor=3)
    assert cover.loc["images"].tolist() == [1000, 50]
    assert cover.loc["classes_covered"].tolist() == [6, 6]
    assert cover.loc["classes_at_floor", "subset"] == 6
    frame = subset.per_class(table, chosen, C)
    assert frame.index[0] == 0 and frame["subset"].sum() == chosen.num_labels


def test_verb_writes_the_authors_format(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _table().write(tmp_path / "full.txt")
    out = tmp_path / "sub.txt"
    argv = ["subset", str(tmp_path / "full.txt"), "--out", str(out), "--max-images", "40"]
    assert main([*argv, "--min-per-class", "2", "--seed", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["subset"]["images"] == 40 == len(read_label_list(out))
    assert result["subset"]["classes_covered"] == 6
