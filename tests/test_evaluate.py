"""The evaluation stage on the smoke profile's records, against an independent computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlimages import cli
from mlimages.config.params import load_params
from mlimages.data.synthetic import mini_taxonomy
from mlimages.evaluate import checkpoints, multilabel
from mlimages.fetch import download
from mlimages.input import records

TARGET_CLASSES = 4  # the smoke profile's synth.target_classes


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory):
    """The smoke profile's validation records and a stand-in pretraining model."""
    from mlimages.config.layout import MODEL_FILE
    from mlimages.paper.model import build_resnet
    from mlimages.train.engine import save_model

    runs = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLIMAGES_RUNS", str(runs))
    params = load_params(
        "smoke",
        {"evaluate.batch": 16, "synth.num_train": 40, "synth.num_val": 24, "records.workers": 1},
    )
    download.run_download_stage(params)
    records.run_records_stage(params, ["train", "val", "target_val"])
    import keras

    keras.utils.set_random_seed(0)  # the same stand-in model every run
    model = build_resnet(mini_taxonomy().num_classes, blocks=[1, 1, 1, 1], width=4, image_size=32)
    save_model(model, params.stage_dir("pretrain") / MODEL_FILE)
    yield params
    mp.undo()


def _independent_scores(params, model_path: Path, size: int, mode: str):
    """Model outputs and targets over the records, computed without mlimages.evaluate."""
    import keras

    from mlimages.input import pipeline

    model = keras.models.load_model(model_path)
    split = "val" if mode == pipeline.PRETRAIN else "target_val"
    index = records.split_index(params.run_dir, split)
    outputs, targets = [], []
    for x, y in pipeline.eval_dataset(index, size, 7, index.num_classes, mode):
        outputs.append(model(x, training=False).numpy())
        targets.append(y.numpy())
    return np.concatenate(outputs), np.concatenate(targets)


def test_stage_matches_sklearn_and_brute_force(smoke) -> None:
    from sklearn.metrics import average_precision_score

    from mlimages.config.layout import MODEL_FILE
    from mlimages.input.pipeline import FINETUNE, PRETRAIN
    from mlimages.paper.model import build_resnet
    from mlimages.train.engine import save_model

    params = smoke
    out = params.run_dir / checkpoints.STAGE
    first = checkpoints.run_evaluate_stage(params)
    assert first["single_label"].empty and not (out / "single_label.csv").exists()

    logits, labels = _independent_scores(
        params, params.run_dir / "pretrain" / MODEL_FILE, 32, PRETRAIN
    )
    scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
    positive = labels >= 0.5
    table = pd.read_csv(out / "multilabel.csv")
    assert list(table["k"]) == list(range(1, 11))
    for k in (1, 5, 10):
        precision, recall = [], []
        for s, y in zip(scores.astype(np.float32), positive, strict=True):
            if y.any():
                top = sorted(range(len(s)), key=lambda j: (-s[j], j))[:k]
                precision.append(y[top].sum() / k)
                recall.append(y[top].sum() / y.sum())
        row = table[table["k"] == k].iloc[0]
        assert row["precision_at_k"] == pytest.approx(100 * np.mean(precision), abs=1e-6)
        assert row["recall_at_k"] == pytest.approx(100 * np.mean(recall), abs=1e-6)
    has = positive.any(axis=0)
    stored = scores.astype(np.float32)  # the stage ranks its float32 scores.npy: same ties
    expected_map = np.mean(
        [average_precision_score(positive[:, j], stored[:, j]) for j in np.flatnonzero(has)]
    )
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["map"] == pytest.approx(100 * expected_map, abs=1e-4)
    assert saved["units"] == "percent" and saved["images"] == len(labels)
    assert saved["f1_at_5"] == pytest.approx(table.loc[table["k"] == 5, "f1_at_k"].iloc[0])
    depth = pd.read_csv(out / "by_depth.csv")
    assert depth["classes"].sum() == mini_taxonomy().num_classes and list(depth["depth"]) == list(
        range(len(depth))
    )
    classes = pd.read_csv(out / "classes.csv")
    assert classes["positives"].tolist() == positive.sum(axis=0).tolist()
    assert np.load(out / "scores.npy").shape == np.load(out / "labels.npy").shape == labels.shape

    # The class-prior baseline: the train records' class frequencies score every image.
    train = records.split_index(params.run_dir, "train")
    prior = np.asarray(train.images_per_class) / train.records
    assert saved["prior"]["map"] == pytest.approx(
        100 * np.mean(positive[:, has].mean(axis=0)), abs=1e-4
    )  # a constant score a class: AP = the class's prevalence
    ranked = sorted(range(len(prior)), key=lambda j: (-np.float32(prior[j]), j))
    with_positives = positive[positive.any(axis=1)]
    for k in (1, 5):
        hits = with_positives[:, ranked[:k]].sum(axis=1)
        row = table[table["k"] == k].iloc[0]
        assert row["prior_precision_at_k"] == pytest.approx(100 * np.mean(hits / k), abs=1e-6)
        assert row["prior_recall_at_k"] == pytest.approx(
            100 * np.mean(hits / with_positives.sum(axis=1)), abs=1e-6
        )
    assert (table["prior_map"] == saved["prior"]["map"]).all()

    # Fine-tuned checkpoints appear once they exist, at both fine-tuning sizes.
    run = params.run_dir / "finetune" / "ckpt2" / "seed0"
    run.mkdir(parents=True)
    save_model(build_resnet(TARGET_CLASSES, blocks=[1, 1, 1, 1], width=4), run / MODEL_FILE)
    second = checkpoints.run_evaluate_stage(params)
    single = pd.read_csv(out / "single_label.csv")
    assert sorted(single["img_size"]) == [params.finetune.base_size, params.finetune.large_size]
    for size in single["img_size"]:
        logits, targets = _independent_scores(params, run / MODEL_FILE, size, FINETUNE)
        top1 = 100 * np.mean(logits.argmax(axis=1) == targets)
        assert single.loc[single["img_size"] == size, "top1"].iloc[0] == pytest.approx(top1)
    assert len(second["summary"]["finetune"]) == 2


def test_class_prior_ranking_on_a_toy_label_matrix(tmp_path: Path) -> None:
    from mlimages.core.metrics import multilabel_metrics

    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 1]], dtype=np.float16)
    np.save(tmp_path / "labels.npy", labels)
    prior = np.array([5, 3, 1]) / 10  # training frequencies: class 0, then 1, then 2
    got = multilabel.prior_multilabel(prior, tmp_path / "labels.npy", (1, 2))
    # AP of a class scored alike everywhere = its prevalence: (3/4 + 2/4 + 1/4) / 3
    assert got.map == pytest.approx(0.5)
    # every image's top-1 is class 0 (hits 1, 1, 0, 1), its top-2 classes 0 and 1
    assert got.instance[1]["precision"] == pytest.approx(0.75)
    assert got.instance[1]["recall"] == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    assert got.instance[2]["precision"] == pytest.approx((0.5 + 1 + 0.5 + 0.5) / 4)
    assert got.instance[2]["recall"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    perfect = multilabel_metrics((labels.astype(np.float32), labels), (1, 2))
    assert perfect.map == 1.0 and perfect.instance[1]["precision"] == 1.0
    assert perfect.map > got.map and perfect.instance[2]["recall"] > got.instance[2]["recall"]
    table = multilabel.prior_columns(got, (1, 2))
    assert table["prior_precision_at_k"].tolist() == pytest.approx([75.0, 62.5])
    assert (table["prior_map"] == 50.0).all()
    assert multilabel.prior_columns(None, (1, 2))["prior_map"].isna().all()
    with pytest.raises(ValueError, match=r"labels.npy: shape \(4, 3\); expected \[images, 2\]"):
        multilabel.PriorSource(prior[:2], tmp_path / "labels.npy")


def test_evaluate_verb_on_one_checkpoint(smoke, tmp_path: Path, capsys) -> None:
    params = smoke
    assert cli.main(["evaluate", "--params", "smoke", "--ckpt", "x.keras"]) == 2
    assert "--ckpt needs --out" in capsys.readouterr().err
    model = params.run_dir / "pretrain" / "model.keras"
    argv = ["evaluate", "--params", "smoke", "--ckpt", str(model), "--out", str(tmp_path), "--json"]
    assert cli.main(argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["split"] == "val" and {"map", "f1_at_5", "precision_at_10"} <= set(shown)
    assert (tmp_path / "multilabel.csv").is_file()


def test_metrics_verb_reads_npy_files(tmp_path: Path, capsys) -> None:
    from mlimages.core.metrics import multilabel_metrics

    rng = np.random.default_rng(0)
    scores = rng.random((50, 12), dtype=np.float32)
    labels = (rng.random((50, 12)) < 0.3).astype(np.float16)
    np.save(tmp_path / "s.npy", scores)
    np.save(tmp_path / "l.npy", labels)
    argv = ["metrics", "--scores", str(tmp_path / "s.npy"), "--labels", str(tmp_path / "l.npy")]
    assert cli.main([*argv, "--k", "3", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    expected = multilabel_metrics((scores, labels), (3,))
    assert shown["precision_at_k"] == pytest.approx(expected.instance[3]["precision"])
    assert shown["recall_at_k"] == pytest.approx(expected.instance[3]["recall"])
    assert shown["f1_at_k"] == pytest.approx(expected.instance[3]["f1"])
    assert shown["map"] == pytest.approx(expected.map)
    assert {"macro_f1", "micro_f1", "f1_per_image_at_k", "images_with_positives"} <= set(shown)
    assert cli.main([*argv, "--k", "13"]) == 2
    assert "expected values in 1..12" in capsys.readouterr().err
