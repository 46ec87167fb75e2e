"""The published numbers: every figure the study compares with, each with its source."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlimages.data.taxonomy import load_dictionary
from mlimages.paper import facts


def test_dataset_statistics_keep_their_keys() -> None:
    stats = facts.dataset_statistics()
    assert stats["train_images"].value == 17_609_752 and stats["classes"].value == 11_166
    assert stats["labels_per_image_mean"].value == 8.72 and stats["max_depth"].value == 16
    assert all(p.source for p in stats.values())


def test_imagenet_table_is_the_papers() -> None:
    table = {(r.ckpt, r.img_size): (r.top1, r.top5) for r in facts.IMAGENET_RESULTS}
    assert set(table) == {(c, s) for c in (1, 2, 3, 4) for s in (224, 299)}
    assert table[(1, 224)] == (77.8, 93.9) and table[(1, 299)] == (79.0, 94.5)
    assert table[(2, 224)] == (78.8, 94.5) and table[(2, 299)] == (79.5, 94.9)
    assert table[(3, 224)] == (78.3, 94.2) and table[(3, 299)] == (80.73, 95.5)
    assert table[(4, 224)] == (75.8, 92.7) and table[(4, 299)] == (79.6, 94.6)
    assert all(r.source == facts.RESULTS and r.setting for r in facts.IMAGENET_RESULTS)


def test_references_and_reimplementation_are_separate() -> None:
    refs = {(r.name, r.setting, r.img_size): (r.top1, r.top5) for r in facts.REFERENCE_RESULTS}
    assert refs[("MSRA ResNet-101", "trained on ImageNet", 224)] == (76.4, 92.9)
    assert refs[("Google ResNet-101", "trained on ImageNet", 299)] == (77.5, 93.9)
    assert refs[("Google ResNet-101", "JFT-300M -> ImageNet", 299)] == (79.2, 94.7)
    assert facts.reimplementation_accuracy(2, 224).top1 == 76.7
    assert facts.reimplementation_accuracy(3, 224).top5 == 90.5
    assert facts.reimplementation_accuracy(2, 299) is None
    assert facts.paper_accuracy(2, 224).source != facts.reimplementation_accuracy(2, 224).source


def test_lookup() -> None:
    assert facts.paper_accuracy(3, 299).top1 == 80.73
    assert facts.paper_accuracy(5, 224) is None  # ckpt 5 is ours only
    with pytest.raises(ValueError, match="224, 299"):
        facts.paper_accuracy(1, 256)


def test_multilabel_figures() -> None:
    values = {p.key: p.value for p in facts.MULTILABEL_RESULTS}
    assert values == {"instance_f1_at_5": 23.3, "instance_f1_at_10": 28.1}


def test_hierarchy_figures_hold_on_the_authors_dictionary(shared: Path) -> None:
    stats = load_dictionary(shared / "dictionary_and_semantic_hierarchy.txt").stats()
    published = facts.dataset_statistics()
    assert stats["classes"] == published["classes"].value
    assert stats["max_depth"] == published["max_depth"].value
    assert round(stats["mean_depth"], 2) == published["mean_depth"].value
