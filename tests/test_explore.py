"""Notebook 01's computations, on the smoke miniature and on the authors' tiny list."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlimages.config.params import load_params
from mlimages.data import explore


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MLIMAGES_RUNS", str(tmp_path_factory.mktemp("runs")))
    params = load_params("smoke", {"explore.progress": False})
    yield params, explore.load(params)
    mp.undo()


def test_miniature_tables(smoke) -> None:
    params, data = smoke
    hierarchy = dict(explore.hierarchy_table(data.taxonomy).to_numpy())
    assert hierarchy["classes"] == data.taxonomy.num_classes and hierarchy["roots"] == 2
    per_class = explore.images_per_class(data)
    assert per_class.is_monotonic_decreasing and per_class.iloc[0] <= params.synth.num_train
    depth = explore.depth_distribution(data)
    assert depth["classes"].sum() == data.taxonomy.num_classes
    assert depth["labels"].sum() == data.counted.num_labels
    effect = explore.closure_effect(data)
    assert effect.loc["labels", "closed"] > effect.loc["labels", "as listed"]
    assert effect.loc["images changed by closure", "closed"] > 0
    co = explore.cooccurrence(data, 6)
    assert co.shape == (6, 6) and np.array_equal(co.to_numpy(), co.to_numpy().T)
    assert np.array_equal(np.diag(co.to_numpy()), per_class.iloc[:6].to_numpy())


def test_save_writes_results_and_parameters(smoke) -> None:
    params, data = smoke
    out = explore.save(data, params)
    names = {p.name for p in out.iterdir()}
    for expected in (
        "metrics.json",
        "images_per_class.csv",
        "cooccurrence.csv",
        "closure.csv",
        "published_vs_ours.csv",
        "images_per_class.png",
        "cooccurrence.png",
    ):
        assert expected in names
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"]["images"] == params.synth.num_train
    assert metrics["closed"]["labels_per_image_mean"] > metrics["labels"]["labels_per_image_mean"]


def test_authors_files_with_published_figures(shared: Path, runs: Path) -> None:
    params = load_params(
        "paper",
        {
            "data.dictionary": str(shared / "dictionary_and_semantic_hierarchy.txt"),
            "data.train_list": str(shared / "train_urls_tiny.txt"),
            "data.val_list": None,
            "explore.progress": False,
        },
    )
    data = explore.load(params)
    assert len(data.labels) == 100 and data.labels.key_kind() == "url"
    table = explore.published_vs_ours(data).set_index("figure")
    assert table.loc["classes", "ours"] == table.loc["classes", "paper"] == 11_166
    longest = table.loc["longest path in the hierarchy (edges)"]
    assert longest["ours"] == longest["paper"] == 16
    assert table.loc["training images", "ours"] == 100
    assert (explore.save(data, params) / "metrics.json").is_file()
