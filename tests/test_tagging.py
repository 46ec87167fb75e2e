"""Tagging and features on the authors' four photos, with a checkpoint trained here; inputs as
paths or plain lists; ten crops averaged per image; the authors' TF1 format too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlimages import cli
from mlimages.data.synthetic import mini_taxonomy
from mlimages.input import image_input

SIZE = 40


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A narrow ResNet over the miniature's 64 classes, trained a few steps, saved as a run
    folder's model.keras and as an authors'-format TF1 checkpoint; the dictionary beside."""
    import keras
    import tensorflow as tf

    from mlimages.config.layout import MODEL_FILE
    from mlimages.paper.model import build_resnet
    from mlimages.paper.tf1_checkpoint import export_tf1_checkpoint
    from mlimages.train.engine import save_model

    root = tmp_path_factory.mktemp("tagging")
    taxonomy = mini_taxonomy()
    keras.utils.set_random_seed(0)
    model = build_resnet(taxonomy.num_classes, blocks=[1, 1, 1, 1], width=4, image_size=SIZE)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (16, SIZE, SIZE, 3)).astype(np.float32)
    y = (rng.random((16, taxonomy.num_classes)) < 0.1).astype(np.float32)
    optimizer = keras.optimizers.SGD(0.1)
    for _ in range(3):  # a few plain SGD steps: trained weights and BN statistics
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                tf.nn.sigmoid_cross_entropy_with_logits(y, model(x, training=True))
            )
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    (root / "run").mkdir()
    save_model(model, root / "run" / MODEL_FILE)
    export_tf1_checkpoint(model, root / "tf1" / "model.ckpt")
    taxonomy.write(root / "dictionary.txt")
    return {
        "run": root / "run",
        "tf1": root / "tf1" / "model.ckpt",
        "dict": root / "dictionary.txt",
    }


@pytest.fixture(scope="module")
def photos(shared: Path) -> list[Path]:
    return sorted((shared / "images").glob("*.jpg"))


def _model_outputs(run: Path, photos: list[Path], size: int):
    """Logits and features of each photo's evaluation crop, one image at a time."""
    import keras
    import tensorflow as tf

    from mlimages.input.pipeline import eval_image
    from mlimages.paper.model import feature_model

    model = feature_model(keras.models.load_model(run / "model.keras"))
    out = [model(eval_image(tf.constant(p.read_bytes()), size)[None]) for p in photos]
    return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


def test_tags_of_the_authors_photos(trained, photos, capsys) -> None:
    taxonomy = mini_taxonomy()
    images = ["tag", *map(str, photos)]
    options = ["--top-k", "6", "--dictionary", str(trained["dict"]), "--json"]
    assert cli.main([*images, "--ckpt", str(trained["run"]), *options]) == 0
    tagged = json.loads(capsys.readouterr().out)
    logits, _ = _model_outputs(trained["run"], photos, SIZE)
    expected = 1 / (1 + np.exp(-logits))
    assert [t["image"] for t in tagged] == [str(p) for p in photos]
    for entry, scores in zip(tagged, expected, strict=True):
        tags = entry["tags"]
        assert entry["image_size"] == SIZE and len(tags) == 6
        assert [t["index"] for t in tags] == list(np.argsort(-scores, kind="stable")[:6])
        assert [t["score"] for t in tags] == pytest.approx(scores[[t["index"] for t in tags]])
        for t in tags:  # named by index: names repeat in the authors' dictionary
            assert (t["wnid"], t["name"]) == (
                taxonomy.wnids[t["index"]],
                taxonomy.names[t["index"]],
            )

    images = images[:3]  # two photos are enough for the options
    argv = [*images, "--ckpt", str(trained["run"]), *options]
    assert cli.main([*argv, "--leaves-only", "--threshold", "0.5"]) == 0
    leaves = set(taxonomy.leaves.tolist())
    for entry in json.loads(capsys.readouterr().out):
        assert all(t["index"] in leaves and t["score"] >= 0.5 for t in entry["tags"])

    # The authors' TF1 format gives the same tags (architecture read from the checkpoint).
    assert cli.main([*images, "--ckpt", str(trained["tf1"]), *options]) == 0
    from_tf1 = json.loads(capsys.readouterr().out)
    assert from_tf1[0]["image_size"] == 224  # a TF1 checkpoint has no input size: the paper's
    assert cli.main([*argv, "--image-size", "224"]) == 0
    for ours, theirs in zip(json.loads(capsys.readouterr().out), from_tf1, strict=True):
        assert [t["index"] for t in ours["tags"]] == [t["index"] for t in theirs["tags"]]
        assert [t["score"] for t in ours["tags"]] == pytest.approx(
            [t["score"] for t in theirs["tags"]], abs=1e-5
        )


def test_features_from_a_plain_list_and_ten_crops(trained, photos, tmp_path, capsys) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in photos[:2]) + "\n# comment\n")
    args = ["--ckpt", str(trained["run"]), "--batch", "3"]
    out = tmp_path / "centre.npy"
    assert (
        cli.main(["features", str(listing), *map(str, photos[2:]), *args, "--out", str(out)]) == 0
    )
    capsys.readouterr()
    _, expected = _model_outputs(trained["run"], photos, SIZE)
    centre = np.load(out)
    assert centre.shape == (4, 4 * 32) and np.allclose(centre, expected, atol=1e-5)

    ten = tmp_path / "ten.npy"
    inputs = [str(listing), *map(str, photos[2:])]
    assert cli.main(["features", *inputs, *args, "--out", str(ten), "--ten-crop", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["crops"] == 10
    import keras

    from mlimages.paper.model import feature_model

    model = feature_model(keras.models.load_model(trained["run"] / "model.keras"))
    averaged = np.load(ten)
    for i in (1, 3):  # each image's ten crops alone, averaged (batches of 3: both batches)
        crops = image_input.ten_crops(photos[i].read_bytes(), SIZE, 0.8)
        assert np.allclose(averaged[i], model(crops)[1].numpy().mean(axis=0), atol=1e-5)
    assert not np.allclose(averaged[0], averaged[1])


def test_ten_crops_centre_is_the_evaluation_input(photos, tmp_path) -> None:
    import tensorflow as tf
    from PIL import Image

    from mlimages.input.pipeline import eval_image

    jpeg = photos[1].read_bytes()
    crops = image_input.ten_crops(jpeg, 48, 0.8).numpy()
    assert crops.shape == (10, 48, 48, 3)
    assert np.array_equal(crops[0], eval_image(tf.constant(jpeg), 48).numpy())
    assert np.array_equal(crops[5:], crops[:5, :, ::-1])  # the mirrored five
    assert not np.allclose(crops[1], crops[4])  # corners differ on a real photo
    square = tmp_path / "square.png"  # not a JPEG: re-encoded, same crops machinery
    Image.new("RGB", (30, 30), (200, 10, 10)).save(square)
    whole = image_input.ten_crops(image_input.jpeg_bytes(square), 16, 1.0).numpy()
    assert np.allclose(whole, whole[0])  # a uniform square: every crop is the whole image


def test_bad_inputs_name_the_file_and_line(tmp_path, photos) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photos[0]}\nmissing.jpg\tlabel 3:1\n")
    with pytest.raises(FileNotFoundError, match=r"list.txt:2: missing.jpg: no such image"):
        image_input.image_paths([listing])
    (tmp_path / "rel.jpg").write_bytes(photos[0].read_bytes())
    listing.write_text("rel.jpg\t0:1\n")  # relative to the list's folder; labels ignored
    assert image_input.image_paths([listing]) == [tmp_path / "rel.jpg"]
    with pytest.raises(FileNotFoundError, match="nope.jpg: no such image or image list"):
        image_input.image_paths([tmp_path / "nope.jpg"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:200])
    with pytest.raises(ValueError, match="broken.jpg: cannot decode"):
        image_input.crops_of(broken, 16, 0.8, False)
