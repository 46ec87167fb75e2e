from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlimages.annotations import read_label_list
from mlimages.params import load_params
from mlimages.synthetic import CONFIDENCES, ensure_miniature, generate, glyphs, mini_taxonomy
from mlimages.taxonomy import load_dictionary


@pytest.fixture(scope="module")
def smoke_mini(tmp_path_factory: pytest.TempPathFactory):
    params = load_params("smoke")
    return params, generate(params.synth, tmp_path_factory.mktemp("mini") / "mini")


def test_mini_hierarchy_is_a_real_subforest_of_the_authors(shared: Path) -> None:
    authors = load_dictionary(shared / "dictionary_and_semantic_hierarchy.txt")
    mini = mini_taxonomy()
    assert 30 <= mini.num_classes <= 80  # a few dozen classes
    for i, wnid in enumerate(mini.wnids):
        j = authors.index_of_wnid[wnid]
        assert mini.names[i] == authors.names[j]
        parent = mini.parents[i]
        expected = authors.parents[j]
        assert (parent == -1) == (expected == -1)
        if parent != -1:
            assert mini.wnids[parent] == authors.wnids[expected]
    water = mini.index_of_wnid["n07935504"]
    assert mini.parents[water] > water  # like 9741 -> 10348: a parent listed after its child


def test_labels_are_closed_with_ml_images_confidences(smoke_mini) -> None:
    params, mini = smoke_mini
    taxonomy = load_dictionary(mini.dictionary)
    train = read_label_list(mini.url_list("train"), num_classes=taxonomy.num_classes)
    val = read_label_list(mini.url_list("val"), num_classes=taxonomy.num_classes)
    assert len(train) == params.synth.num_train and len(val) == params.synth.num_val
    assert set(np.unique(train.confidences).astype(float).round(3)) <= set(CONFIDENCES)
    closed = train.close(taxonomy)
    unclosed = np.count_nonzero(closed.labels_per_image() != train.labels_per_image())
    assert 0 < unclosed < len(train) * 0.5  # some lines listed without ancestors, as published
    assert val == val.close(taxonomy)  # validation is clean and closed
    assert train.key_kind() == "url" and train.key(0).startswith("file://")
    files = read_label_list(mini.file_list("train"))
    assert files.key_kind() == "file" and np.array_equal(files.indices, train.indices)


def test_every_listed_image_exists_and_decodes(smoke_mini) -> None:
    params, mini = smoke_mini
    train = read_label_list(mini.url_list("train"))
    for key in train.keys()[:50]:
        path = Path(key.removeprefix("file://"))
        with Image.open(path) as image:
            assert image.size == (params.synth.image_size, params.synth.image_size)
            assert image.format == "JPEG"


def test_target_task_is_an_imagenet_like_tree(smoke_mini) -> None:
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
    pretrain, held_out = glyphs()
    assert not {g.wnid for g in pretrain} & {g.wnid for g in held_out}
    assert mini.info["target_classes"] == [g.wnid for g in held_out[: params.synth.target_classes]]


def test_generation_is_deterministic_and_reused(tmp_path: Path, smoke_mini) -> None:
    params, mini = smoke_mini
    again = ensure_miniature(params.synth, tmp_path / "mini")
    assert again.file_list("train").read_bytes() == mini.file_list("train").read_bytes()
    image = "images/train/000/train_000007.jpg"
    assert (again.root / image).read_bytes() == (mini.root / image).read_bytes()
    stamp = again.file_list("train").stat().st_mtime_ns
    ensure_miniature(params.synth, tmp_path / "mini")
    assert again.file_list("train").stat().st_mtime_ns == stamp  # same parameters: not regenerated
    other = ensure_miniature(params.synth.model_copy(update={"seed": 1}), tmp_path / "mini")
    assert other.file_list("train").read_bytes() != mini.file_list("train").read_bytes()
    assert not list(tmp_path.glob(".*tmp*")), "no temporary folder left behind"
