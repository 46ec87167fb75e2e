"""The paper's ResNet: its parameter counts, its architecture, and the authors' checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from mlimages.cli import main
from mlimages.config.params import load_params
from mlimages.paper import facts, tf1_checkpoint
from mlimages.paper import model as M
from mlimages.train import from_profile


def _relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(np.asarray(out) - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def authors(authors_checkpoint: Path) -> dict:
    folder = authors_checkpoint
    names = [line.split("\t")[0] for line in (folder / "variables.txt").read_text().splitlines()]
    return {
        "dir": folder,
        "names": names,
        "inputs": np.load(folder / "inputs.npy"),
        "logits": np.load(folder / "logits.npy"),
        "feat": np.load(folder / "feat.npy"),
    }


@pytest.fixture(scope="module")
def resnet50(authors: dict) -> keras.Model:
    model = M.build_resnet(10, 50)
    tf1_checkpoint.load_tf1_checkpoint(model, authors["dir"])
    return model


@pytest.mark.parametrize(("classes", "millions"), [(1000, 44.5), (11166, 65.4)])
def test_resnet101_trainable_parameters_through_the_verb(capsys, classes, millions) -> None:
    argv = ["model", "summary", "--depth", "101", "--num-classes", str(classes), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] / 1e6 == pytest.approx(millions, abs=0.05)
    # stem conv + 33 blocks of 3 convs and 3 BNs (4 variables each), a projection conv and BN
    # in the first block of each of the 4 stages, the head's BN, the dense kernel and bias.
    assert out["tf1_variables"] == 1 + 33 * 3 * 5 + 4 * 5 + 4 + 2 == 522


def test_architecture_of_a_reduced_variant() -> None:
    model = M.build_resnet(7, blocks=(1, 2, 1, 1), width=4, image_size=64)
    shapes = {layer.name: layer.output.shape for layer in model.layers}
    # No max-pool, stride 2 in the stem and in the first block of every stage, stage 0 too.
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)
    assert shapes["init.init_conv"] == (None, 32, 32, 4)
    assert shapes["stages_0_block_0.add"] == (None, 16, 16, 16)
    assert shapes["stages_1_block_0.add"] == shapes["stages_1_block_1.add"] == (None, 8, 8, 32)
    assert shapes["stages_3_block_0.add"] == (None, 2, 2, 128)
    assert shapes[M.FEATURES_LAYER] == (None, 128)
    assert model.get_layer("stages_1_block_0.conv2_b2").kernel.shape == (3, 3, 8, 8)
    assert model.get_layer("stages_1_block_0.conv1_b1").kernel.shape == (1, 1, 16, 32)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {(b.momentum, b.epsilon) for b in bns} == {(0.997, 1e-5)}
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert not any(c.use_bias for c in convs) and model.get_layer("logits").use_bias
    # Nothing follows the stem conv but the first block (pre-activation throughout).
    assert (
        model.get_layer("stages_0_block_0.conv1_b2_bn").input
        is model.get_layer("init.init_conv").output
    )


def test_the_stride_two_padding_is_the_authors() -> None:
    """A 3x3 stride-2 conv pads 1 before and 1 after (not SAME's 0/1 on even sizes)."""
    model = M.build_resnet(2, blocks=(1, 1, 1, 1), width=1, image_size=8)
    layer = model.get_layer("stages_0_block_0.conv2_b2.pad")
    assert layer.padding == ((1, 1), (1, 1))
    assert model.get_layer("init.init_conv.pad").padding == ((3, 3), (3, 3))


def test_names_map_both_ways_and_cover_the_authors_checkpoint(authors: dict) -> None:
    model = M.build_resnet(10, 50)
    names = M.tf1_variables(model)
    assert sorted(names) == sorted(authors["names"])
    for name, variable in names.items():
        layer, weight = M.keras_name(name)
        assert variable.path == f"{layer}/{weight}"
    with pytest.raises(ValueError, match="expected <scope>/"):
        M.keras_name("global_step")


def test_authors_checkpoint_reproduces_their_logits_and_features(resnet50, authors) -> None:
    logits, feat = M.feature_model(resnet50)(authors["inputs"], training=False)
    assert _relative_error(logits, authors["logits"]) < 1e-4
    assert _relative_error(feat, authors["feat"]) < 1e-4


# Keras' own saving code trips a numpy 2 deprecation on every variable; not ours to fix.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_convert_tf1_opens_with_plain_load_model(authors, tmp_path, capsys) -> None:
    out = tmp_path / "r50.keras"
    argv = ["model", "convert-tf1", str(authors["dir"] / "model.ckpt"), "--depth", "50"]
    assert main([*argv, "--num-classes", "10", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"out": str(out)}
    assert [p.name for p in tmp_path.iterdir()] == ["r50.keras"]  # no temporary left behind
    loaded = keras.models.load_model(out)  # built-in layers only: no custom objects needed
    logits, feat = M.feature_model(loaded)(authors["inputs"], training=False)
    assert _relative_error(logits, authors["logits"]) < 1e-4
    assert _relative_error(feat, authors["feat"]) < 1e-4


def test_export_writes_the_authors_names_and_values(resnet50, authors, tmp_path) -> None:
    prefix = tf1_checkpoint.export_tf1_checkpoint(resnet50, tmp_path / "model.ckpt")
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(prefix)
    ours = tf.train.load_checkpoint(str(prefix))
    theirs = tf.train.load_checkpoint(str(authors["dir"] / "model.ckpt"))
    assert sorted(ours.get_variable_to_shape_map()) == sorted(authors["names"])
    for name in authors["names"]:
        np.testing.assert_array_equal(ours.get_tensor(name), theirs.get_tensor(name))


def test_a_shape_mismatch_names_the_variable_and_loads_nothing(authors) -> None:
    model = M.build_resnet(11, 50)
    before = model.get_layer("init.init_conv").kernel.numpy()
    with pytest.raises(M.LogitsMismatchError) as raised:
        tf1_checkpoint.load_tf1_checkpoint(model, authors["dir"])
    message = str(raised.value)
    assert "'logits/dense/kernel' has shape [2048, 10] in the checkpoint" in message
    assert "the model expects [2048, 11]" in message
    assert "10-class head, the model has 11 classes" in message and "skip_logits=True" in message
    np.testing.assert_array_equal(model.get_layer("init.init_conv").kernel.numpy(), before)
    report = tf1_checkpoint.load_tf1_checkpoint(model, authors["dir"], skip_logits=True)
    assert report.skipped == ["logits/dense/bias", "logits/dense/kernel"]
    assert report.unused == []
    assert len(report.loaded) == 265


def test_missing_variables_are_reported_by_name(authors) -> None:
    model = M.build_resnet(10, blocks=(3, 4, 7, 3))
    with pytest.raises(ValueError, match=r"lacks 15 model variables: stages_2_block_6/"):
        tf1_checkpoint.load_tf1_checkpoint(model, authors["dir"])
    with pytest.raises(FileNotFoundError, match="no checkpoint here"):
        tf1_checkpoint.load_tf1_checkpoint(model, authors["dir"] / "nothing.ckpt")


def test_mixed_precision_keeps_float32_logits_and_variables() -> None:
    model = M.build_resnet(5, blocks=(1, 1, 1, 1), width=4, dtype="mixed_float16")
    logits = model(np.zeros((2, 32, 32, 3), np.float32), training=False)
    assert logits.dtype == "float32"
    assert model.get_layer("stages_0_block_0.conv1_b2").compute_dtype == "float16"
    assert {w.dtype for w in model.weights} == {"float32"}
    assert M.dtype_policy(False) == "float32"


def test_a_profile_builds_its_model() -> None:
    params = load_params("smoke")
    model = from_profile.resnet(params.model, num_classes=6)
    assert model.output.shape == (None, 6)
    assert model.get_layer("init.init_conv").filters == params.model.width
    with pytest.raises(ValueError, match="no class count"):
        from_profile.resnet(params.model)


def test_bad_depth_and_blocks_are_refused() -> None:
    with pytest.raises(ValueError, match="expected one of \\[50, 101, 152\\]"):
        M.build_resnet(10, 34)
    with pytest.raises(ValueError, match="expected 4 positive integers"):
        M.build_resnet(10, blocks=(1, 1, 1))


def test_bn_momentum_deviation_reaches_every_batch_norm(tmp_path: Path) -> None:
    params = load_params("smoke").model  # the smoke profile sets a BN momentum of its own
    model = from_profile.resnet(params, num_classes=5, image_size=32)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and {layer.momentum for layer in bns} == {params.bn_momentum} != {facts.BN_MOMENTUM}
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    reloaded = [x for x in again.layers if isinstance(x, keras.layers.BatchNormalization)]
    assert {layer.momentum for layer in reloaded} == {params.bn_momentum}
    paper = from_profile.resnet(load_params("paper").model, num_classes=5, image_size=32)
    assert {
        layer.momentum
        for layer in paper.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    } == {facts.BN_MOMENTUM}


# --- a head of another class count (the authors' users: [2048,1000] vs [2048,11166]) --------

SMALL = {"blocks": (1, 1, 1, 1), "width": 4}


@pytest.fixture(scope="module")
def seven_classes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small 7-class model saved both ways: a TF1 checkpoint and a .keras file."""
    from mlimages.train.engine import save_model

    folder = tmp_path_factory.mktemp("seven")
    model = M.build_resnet(7, **SMALL)
    return {
        "prefix": tf1_checkpoint.export_tf1_checkpoint(model, folder / "model.ckpt"),
        "keras": save_model(model, folder / "model.keras"),
        "features": int(model.get_layer("logits").kernel.shape[0]),
    }


@pytest.mark.parametrize("form", ["prefix", "keras"])
def test_a_head_of_another_class_count_says_both_shapes_and_how_to_skip_it(
    seven_classes: dict, form: str
) -> None:
    load = tf1_checkpoint.load_tf1_checkpoint if form == "prefix" else M.load_keras_weights
    source, features = seven_classes[form], seven_classes["features"]
    model = M.build_resnet(5, **SMALL)
    before = [w.numpy() for w in model.weights]
    with pytest.raises(M.LogitsMismatchError) as raised:
        load(model, source)
    message = str(raised.value)
    assert message.startswith(f"{source}: the logits do not match")
    assert f"'logits/dense/kernel' has shape [{features}, 7] in the checkpoint" in message
    assert f"the model expects [{features}, 5]" in message
    assert "7-class head, the model has 5 classes" in message
    assert "skip_logits=True" in message and "--num-classes" in message
    for old, new in zip(before, model.weights, strict=True):  # all or nothing
        np.testing.assert_array_equal(new.numpy(), old)
    report = load(model, source, skip_logits=True)
    assert report.skipped == ["logits/dense/bias", "logits/dense/kernel"]


def test_a_body_mismatch_is_reported_before_the_head(seven_classes: dict) -> None:
    model = M.build_resnet(5, blocks=(1, 1, 1, 1), width=8)
    with pytest.raises(ValueError, match="'init/init_conv/conv2d/kernel' has shape") as raised:
        tf1_checkpoint.load_tf1_checkpoint(model, seven_classes["prefix"])
    assert not isinstance(raised.value, M.LogitsMismatchError)


def test_a_class_count_given_to_the_loader_is_named_as_the_cause(
    seven_classes: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlimages.train.checkpoint import load_model

    with pytest.raises(M.LogitsMismatchError, match="leave it out to read 7 from the checkpoint"):
        load_model(seven_classes["prefix"], num_classes=5)
    assert load_model(seven_classes["prefix"]).output_shape[-1] == 7
    argv = ["model", "convert-tf1", str(seven_classes["prefix"]), "--blocks", "1", "1", "1", "1"]
    argv += ["--width", "4", "--num-classes", "5", "--out", str(tmp_path / "m.keras")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "7-class head, the model has 5 classes" in err and "skip_logits=True" in err
    assert not (tmp_path / "m.keras").exists()
