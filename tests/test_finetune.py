"""Fine-tuning (checkpoints 1..5) on the smoke profile: settings, size schedule, resume, init."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from mlimages import cli
from mlimages.config import layout
from mlimages.config.params import load_params
from mlimages.train import finetune, finetune_task

FAST = {"finetune.seeds": [0], "finetune.eval_every": 0}


@pytest.fixture(scope="module")
def smoke_runs(smoke_stages: Path) -> Path:
    """The smoke profile's records, and a stand-in for its pretraining run's model.keras."""
    from mlimages.paper.model import build_resnet
    from mlimages.train.engine import save_model

    params = load_params("smoke")
    pretrained = build_resnet(11, blocks=[1, 1, 1, 1], width=8)  # any head: it is not loaded
    save_model(pretrained, params.stage_dir("pretrain") / layout.MODEL_FILE)
    return smoke_stages


def _tf1_weights(path: Path) -> dict[str, np.ndarray]:
    import keras

    from mlimages.paper.model import tf1_variables

    model = keras.models.load_model(path)
    return {name: v.numpy() for name, v in tf1_variables(model).items()}


def _results(params, ckpt: int) -> list[dict[str, str]]:
    with open(finetune.ckpt_dir(params, ckpt) / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_size_schedules_follow_the_settings() -> None:
    paper = load_params("paper")
    assert finetune.size_schedule(paper.finetune, 2) == [(0, 600_000, 224)]
    assert finetune.size_schedule(paper.finetune, 3) == [(0, 450_000, 224), (450_000, 600_000, 299)]
    assert finetune.size_schedule(paper.finetune, 4) == [(0, 600_000, 299)]
    default = load_params("default")
    schedule = finetune.size_schedule(default.finetune, 3)
    assert finetune.train_sizes_label(schedule) == "72->96"
    assert [finetune.size_at(schedule, s) for s in (0, 119, 120, 239)] == [72, 72, 96, 96]
    assert (
        finetune.setting(default.finetune, 5).linear_probe
        and not finetune.setting(default.finetune, 1).pretrained
    )
    baseline = finetune.setting(default.finetune, 6)
    assert baseline.linear_probe and not baseline.pretrained
    with pytest.raises(ValueError, match="ckpt 9: expected one of the checkpoints"):
        finetune.setting(default.finetune, 9)


def test_scratch_through_the_verb(smoke_runs: Path, capsys: pytest.CaptureFixture) -> None:
    sets = [f"--set={k}={json.dumps(v)}" for k, v in FAST.items()]
    assert cli.main(["finetune", "--params", "smoke", "--ckpt", "1", *sets, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    params = load_params("smoke", FAST)
    rows = _results(params, 1)
    assert list(rows[0]) == list(finetune.RESULT_COLUMNS)
    assert [(r["seed"], r["img_size"], r["train_sizes"]) for r in rows] == [
        ("0", "24", "24"),
        ("0", "32", "24"),
    ]
    assert rows[0]["model"] == "resnet_1_1_1_1_w8" and rows[0]["steps"] == "4"
    assert 0 <= float(rows[0]["top1"]) <= float(rows[0]["top5"]) <= 100
    assert metrics["ckpt"] == 1 and metrics["sizes"]["24"]["n"] == 1
    assert metrics["paper"]["224"]["top1"] == 77.8
    run = finetune.seed_dir(params, 1, 0)
    assert (run / "model.keras").is_file() and (run / "log.jsonl").is_file()
    assert not (run / "init.json").exists(), "scratch loads nothing"


def test_pretrained_from_a_tf1_checkpoint_with_an_11166_class_head(smoke_runs: Path) -> None:
    """ckpt 2 initialised from an authors'-format checkpoint: the head is skipped and said so."""
    from mlimages.paper.model import build_resnet
    from mlimages.paper.tf1_checkpoint import export_tf1_checkpoint

    prefix = export_tf1_checkpoint(
        build_resnet(11_166, blocks=[1, 1, 1, 1], width=8), smoke_runs / "tf1" / "model.ckpt"
    )
    params = load_params("smoke", {**FAST, "finetune.init_checkpoint": str(prefix)})
    metrics = finetune.run_finetune_stage(params, 2)
    init = json.loads((finetune.seed_dir(params, 2, 0) / "init.json").read_text())
    assert init["skipped"] == ["logits/dense/bias", "logits/dense/kernel"]
    assert init["unused"] == [] and init["loaded"] > 0 and init["source"] == str(prefix)
    assert metrics["train_sizes"] == "24" and len(_results(params, 2)) == 2


def test_base_then_large_and_a_resume_continues_the_size_schedule(smoke_runs: Path) -> None:
    from mlimages.train.distributed import make_strategy
    from mlimages.train.engine import read_log, run

    params = load_params("smoke", FAST)
    assert finetune.size_schedule(params.finetune, 3) == [(0, 3, 24), (3, 4, 32)]
    task = finetune.task_for(params, 3, 0)
    first = run(dataclasses.replace(task, steps=2), make_strategy("default"))
    assert first["steps"] == 2
    starts: list[int] = []

    def recording(ctx, start_step: int):
        starts.append(start_step)
        return task.dataset_fn(ctx, start_step)

    second = run(dataclasses.replace(task, dataset_fn=recording), make_strategy("default"))
    assert second["resumed_from_step"] == 2 and second["steps"] == 4 and starts == [2]
    resumed = [int(x.shape[1]) for x, _ in task.dataset_fn(None, 2).take(2)]
    fresh = [int(x.shape[1]) for x, _ in task.dataset_fn(None, 0).take(4)]
    assert resumed == [24, 32] and fresh == [24, 24, 24, 32]
    assert [r["step"] for r in read_log(task.out)] == [1, 2, 3, 4]
    finetune.write_schedule(params, 3)
    schedule = finetune.read_schedule(params, 3)
    assert list(schedule["first_step"]) == [0, 2, 3]
    assert list(schedule["image_size"]) == [24, 24, 32]
    assert list(schedule["learning_rate"]) == pytest.approx([0.1, 0.01, 0.01])


def test_large_with_frozen_stages_keeps_stem_and_stages_0_1(smoke_runs: Path) -> None:
    params = load_params("smoke", {**FAST, "finetune.freeze_stages": True})
    metrics = finetune.run_finetune_stage(params, 4)
    assert metrics["train_sizes"] == "32"
    before = _tf1_weights(finetune.init_source(params))
    after = _tf1_weights(finetune.seed_dir(params, 4, 0) / "model.keras")
    frozen = [n for n in after if n.startswith(("init/", "stages_0_", "stages_1_"))]
    assert frozen and any("moving_mean" in n for n in frozen)
    for name in frozen:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert not np.array_equal(
        after["stages_3_block_0/conv2_b2/conv2d/kernel"],
        before["stages_3_block_0/conv2_b2/conv2d/kernel"],
    )


def test_linear_probe_trains_only_the_new_head(smoke_runs: Path) -> None:
    params = load_params("smoke", FAST)
    metrics = finetune.run_finetune_stage(params, 5)
    assert metrics["paper"] is None and metrics["setting"].endswith("linear probe")
    before = _tf1_weights(finetune.init_source(params))
    after = _tf1_weights(finetune.seed_dir(params, 5, 0) / "model.keras")
    for name, value in after.items():
        if not name.startswith("logits/"):
            np.testing.assert_array_equal(value, before[name], err_msg=name)
    assert after["logits/dense/kernel"].shape[1] == 4 != before["logits/dense/kernel"].shape[1]


def test_wrong_shapes_and_missing_names_are_refused_by_name(tmp_path: Path) -> None:
    import tensorflow as tf

    from mlimages.paper.model import build_resnet, tf1_variables
    from mlimages.train.engine import save_model

    params = load_params("smoke")
    model = finetune_task.build_model(
        params.model, 4, finetune.setting(params.finetune, 2), params.finetune.freeze_stages
    )
    good = {n: v.numpy() for n, v in tf1_variables(model).items()}
    bad_name = "stages_1_block_0/conv2_b2/conv2d/kernel"
    for label, tensors in (
        ("shape", {**good, bad_name: np.zeros((3, 3, 1, 1), np.float32)}),
        ("missing", {n: v for n, v in good.items() if n != bad_name}),
    ):
        prefix = tmp_path / label / "model.ckpt"
        prefix.parent.mkdir()
        names = sorted(tensors)
        tf.raw_ops.SaveV2(
            prefix=str(prefix),
            tensor_names=names,
            shape_and_slices=[""] * len(names),
            tensors=[tf.constant(tensors[n]) for n in names],
        )
        with pytest.raises(ValueError, match=bad_name):
            finetune_task.load_pretrained(model, prefix)
    wider = save_model(build_resnet(7, blocks=[1, 1, 1, 1], width=16), tmp_path / "wide.keras")
    with pytest.raises(ValueError, match="variable 'init/init_conv/conv2d/kernel' has shape"):
        finetune_task.load_pretrained(model, wider)


def test_the_authors_checkpoint_initialises_a_new_head(authors_checkpoint: Path) -> None:
    """Their ResNet-50 (10 classes) into a 4-class ResNet-50: body loaded, head skipped."""
    from mlimages.paper.model import build_resnet, tf1_variables

    model = build_resnet(4, 50)
    report = finetune_task.load_pretrained(model, authors_checkpoint)
    assert report.skipped == ["logits/dense/bias", "logits/dense/kernel"]
    assert len(report.loaded) == len(tf1_variables(model)) - 2


def test_precise_bn_sets_the_mean_of_batch_statistics_and_spares_frozen_layers() -> None:
    import keras

    from mlimages.paper.model import build_resnet

    model = build_resnet(3, blocks=[1, 1, 1, 1], width=4)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    frozen = bns[-1]
    frozen.trainable = False
    kept = frozen.moving_mean.numpy().copy()
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32) + k for k in range(3)]
    assert finetune_task.precise_bn(model, batches) == len(bns) - 1
    # The first BN's input is the stem convolution's output: independent of any BN.
    first = bns[0]
    stem = keras.Model(model.inputs, first.input)
    outs = [np.asarray(stem(b)) for b in batches]
    mean = np.mean([o.mean(axis=(0, 1, 2)) for o in outs], axis=0)
    var = np.mean([o.var(axis=(0, 1, 2)) for o in outs], axis=0)
    np.testing.assert_allclose(first.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(first.moving_variance.numpy(), var, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), kept)
    with pytest.raises(ValueError, match="no batches"):
        finetune_task.precise_bn(model, [])


def test_random_feature_probe_gets_target_bn_statistics_and_trains_only_the_head(
    smoke_runs: Path,
) -> None:
    params = load_params("smoke", FAST)
    metrics = finetune.run_finetune_stage(params, 6)
    assert metrics["paper"] is None and metrics["setting"].startswith("random init")
    out = finetune.seed_dir(params, 6, 0)
    init = json.loads((out / "init.json").read_text())
    assert init["source"] == "random initialisation" and init["bn_statistics_from_target"] > 0
    after = _tf1_weights(out / "model.keras")
    moving = [v for k, v in after.items() if k.endswith("moving_mean")]
    assert moving and all(np.abs(m).max() > 0 for m in moving)  # not the 0 of a fresh network


def test_a_rerun_with_another_learning_rate_trains_again(
    smoke_runs: Path, capsys: pytest.CaptureFixture
) -> None:
    first = load_params("smoke", FAST)
    finetune.run_finetune_stage(first, 2)
    out = finetune.seed_dir(first, 2, 0)
    trained = (out / "model.keras").stat().st_mtime_ns
    finetune.run_finetune_stage(first, 2)  # same values: the finished run is kept
    assert (out / "model.keras").stat().st_mtime_ns == trained
    changed = load_params("smoke", {**FAST, "finetune.lr": 0.01})
    finetune.run_finetune_stage(changed, 2)
    assert "finetune.lr: 0.1 -> 0.01" in capsys.readouterr().err
    assert (out / "model.keras").stat().st_mtime_ns != trained
    assert json.loads((out / "fingerprint.json").read_text())["finetune.lr"] == 0.01
    assert yaml_lr(finetune.ckpt_dir(changed, 2) / "params.yaml") == 0.01


def yaml_lr(path: Path) -> float:
    import yaml

    return yaml.safe_load(path.read_text())["finetune"]["lr"]


def _names_by_class(index) -> dict[int, list[str]]:
    """Record names of each class in the records' stored order."""
    from mlimages.input import record_reader

    found: dict[int, list[str]] = {}
    for path in index.paths:
        for _, record in record_reader.read_records(path):
            found.setdefault(int(record.indices[0]), []).append(record.name)
    return found


def test_hold_out_novel_drops_exactly_the_images_of_novel_leaves(
    smoke_runs: Path, tmp_path: Path
) -> None:
    from mlimages.data.labels.read import read_label_list
    from mlimages.data.synthetic import ensure_miniature
    from mlimages.data.taxonomy import load_dictionary
    from mlimages.input import pipeline, record_reader, records
    from mlimages.train import pretrain

    base = load_params("smoke")
    params = load_params("smoke", {"pretrain.hold_out_novel": True})
    assert pretrain.held_out_classes(base) == []
    novel = pretrain.held_out_classes(params)
    mini = ensure_miniature(params.synth, params.run_dir / "data" / "mini")
    taxonomy = load_dictionary(str(mini.dictionary))
    assert [taxonomy.wnids[i] for i in novel] == sorted(
        mini.info["novel_classes"], key=taxonomy.index_of_wnid.get
    )
    listed = read_label_list(params.run_dir / "download" / "train" / "labels.txt")
    carrying = sum(bool(set(listed.labels(i)[0].tolist()) & set(novel)) for i in range(len(listed)))
    assert carrying > 0, "the smoke subset holds images of the novel leaves"
    index = records.split_index(params.run_dir, "train")
    task = pretrain.task_from_params(params, tmp_path)
    held = json.loads((tmp_path / pretrain.HELD_OUT_FILE).read_text())
    assert (
        held["remaining"]
        == index.records - carrying
        == sum(record_reader.records_without(index, novel))
    )
    assert task.epoch_steps == held["remaining"] // params.pretrain.global_batch
    dataset = pipeline.train_dataset(
        index, 8, 1, index.num_classes, repeat=False, augment=False, exclude_classes=novel
    )
    targets = np.concatenate([y.numpy() for _, y in dataset])
    assert len(targets) == held["remaining"] and not targets[:, novel].any()
    assert pretrain.run_values(params)["pretrain"]["hold_out_novel"] is True
    assert pretrain.run_values(params) != pretrain.run_values(base)


def test_novel_task_trains_and_evaluates_on_the_novel_splits(smoke_runs: Path) -> None:
    import keras

    from mlimages.evaluate import checkpoints
    from mlimages.input import records
    from mlimages.report import verdicts

    params = load_params("smoke", {**FAST, "finetune.task": "novel"})
    target = load_params("smoke", FAST)
    assert finetune.run_values(params, 1, 0)["records"] == (
        records.split_index(params.run_dir, "novel_train").fingerprint
    )
    assert finetune.run_values(params, 1, 0) != finetune.run_values(target, 1, 0)
    metrics = finetune.run_finetune_stage(params, 1)
    assert metrics["sizes"]["24"]["n"] == 1
    model = keras.models.load_model(finetune.seed_dir(params, 1, 0) / "model.keras")
    assert model.output_shape[-1] == params.synth.novel_classes == verdicts.target_classes(params)
    assert (
        records.split_index(params.run_dir, "novel_val").records
        == 2 * params.synth.target_val_per_class
    )
    table = checkpoints.evaluate_finetuned(params)
    assert set(table["images"]) == {2 * params.synth.target_val_per_class}
    assert set(table["ckpt"]) == {1}, "the target task's runs (ckpt 2..6) are left out"


def test_k_subsets_are_the_first_k_a_class_nested_and_the_same_for_every_seed(
    smoke_runs: Path,
) -> None:
    full = load_params("smoke")
    stored = _names_by_class(finetune.training_index(full))
    chosen = {}
    for k in (1, 2, 100):
        params = load_params("smoke", {"finetune.examples_per_class": k, "finetune.seeds": [7]})
        index = finetune.training_index(params)
        subsets = params.stage_dir(finetune.STAGE) / finetune.SUBSETS
        assert index.root == subsets / f"target_train-k{k}"
        chosen[k] = _names_by_class(index)
        assert chosen[k] == {c: names[:k] for c, names in stored.items()}
        assert list(index.images_per_class) == [min(k, len(n)) for _, n in sorted(stored.items())]
        other = load_params("smoke", {"finetune.examples_per_class": k, "finetune.seeds": [0]})
        assert finetune.training_index(other) == index  # kept, not rewritten
    assert all(set(chosen[1][c]) <= set(chosen[2][c]) for c in stored)


def test_a_k_run_trains_on_fewer_images_than_a_batch_and_is_its_own_run(
    smoke_runs: Path,
) -> None:
    full = load_params("smoke", FAST)
    params = load_params("smoke", {**FAST, "finetune.examples_per_class": 1})
    index = finetune.training_index(params)
    assert index.records == params.synth.target_classes < params.finetune.global_batch
    values = finetune.run_values(params, 1, 0)
    assert values["finetune"]["examples_per_class"] == 1
    assert values["records"] == index.fingerprint != finetune.run_values(full, 1, 0)["records"]
    finetune.run_finetune_stage(params, 1)  # precise BN draws its batch from the 4 images
    rows = _results(params, 1)
    assert all(float(r["train_top1"]) % 25 == 0 for r in rows), "top-1 over the 4 subset images"
    recorded = json.loads((finetune.seed_dir(params, 1, 0) / "fingerprint.json").read_text())
    assert recorded["finetune.examples_per_class"] == 1
