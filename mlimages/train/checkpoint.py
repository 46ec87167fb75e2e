"""Any checkpoint the study meets, opened as a Keras model (images in [-1, 1] -> logits).

Three forms: a training run folder (its `model.keras`), a `.keras` file, or an authors'-format
TF1 checkpoint (a prefix such as `model.ckpt`, or a folder with a `checkpoint` state file).
A TF1 checkpoint is converted in memory: `build_resnet` of its architecture, then
`load_tf1_checkpoint` by name. The architecture (classes, blocks a stage, width) is read
from the checkpoint's variable shapes unless given, so the authors' 11,166-class ResNet-101
opens without flags.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from mlimages.config.layout import MODEL_FILE
from mlimages.paper.facts import BASE_SIZE, DEPTHS, PAPER_WIDTH


def load_model(
    path: str | os.PathLike,
    *,
    depth: int | None = None,
    num_classes: int | None = None,
    blocks: Sequence[int] | None = None,
    width: int | None = None,
):
    """The model behind `path`; `depth`/`num_classes`/`blocks`/`width` apply to TF1 only."""
    import keras

    import mlimages.paper.model  # noqa: F401 (our layers' module, for a saved model to open)

    p = Path(path)
    if p.is_dir() and (p / MODEL_FILE).is_file():
        p = p / MODEL_FILE
    if p.suffix == ".keras":
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such model file")
        return keras.models.load_model(p, compile=False)
    prefix = tf1_prefix(p)
    return _from_tf1(prefix, depth=depth, num_classes=num_classes, blocks=blocks, width=width)


def tf1_prefix(path: Path) -> str:
    """The checkpoint prefix of a TF1 path: given, or named by a folder's `checkpoint` file."""
    import tensorflow as tf

    if path.is_dir():
        latest = tf.train.latest_checkpoint(str(path))
        if latest is None:
            raise FileNotFoundError(
                f"{path}: neither {MODEL_FILE} (a finished run) nor a `checkpoint` state file "
                "(an authors' TF1 checkpoint)"
            )
        return latest
    if not Path(f"{path}.index").is_file():
        raise FileNotFoundError(
            f"{path}: expected a run folder, a .keras file or a TF1 checkpoint prefix "
            f"({path}.index not found)"
        )
    return str(path)


def tf1_architecture(prefix: str) -> dict:
    """num_classes, blocks a stage and width of an authors'-format checkpoint."""
    import tensorflow as tf

    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    try:
        num_classes = int(shapes["logits/dense/bias"][0])
        width = int(shapes["init/init_conv/conv2d/kernel"][-1])
    except KeyError as exc:
        raise ValueError(f"{prefix}: no variable {exc}; expected the authors' ResNet") from None
    counts = [0, 0, 0, 0]
    for name in shapes:
        m = re.match(r"stages_(\d+)_block_(\d+)/", name)
        if m and int(m.group(1)) < 4:
            counts[int(m.group(1))] = max(counts[int(m.group(1))], int(m.group(2)) + 1)
    return {"num_classes": num_classes, "blocks": counts, "width": width}


def _from_tf1(prefix: str, *, depth, num_classes, blocks, width):
    from mlimages.paper.model import LogitsMismatchError, build_resnet
    from mlimages.paper.tf1_checkpoint import load_tf1_checkpoint

    found = tf1_architecture(prefix)
    if blocks is None and depth is None:
        blocks = found["blocks"]
        depth = next((d for d, b in DEPTHS.items() if list(b) == blocks), None)
        if depth is not None:
            blocks = None  # the paper's depth: its name (resnet101) and layout
    model = build_resnet(
        num_classes or found["num_classes"],
        depth,
        blocks=blocks,
        width=width or found["width"],
    )
    try:
        load_tf1_checkpoint(model, prefix)
    except LogitsMismatchError as exc:
        if num_classes is None:
            raise
        raise LogitsMismatchError(
            f"{exc} Here the class count was given (num_classes={num_classes}, the CLI's "
            f"--num-classes): leave it out to read {found['num_classes']} from the checkpoint."
        ) from None
    return model


def num_classes_of(model) -> int:
    return int(model.output_shape[-1])


def fixed_image_size(model) -> int | None:
    """The input side the model was built for, or None when it takes any size."""
    height, width = model.input_shape[1:3]
    return height if height is not None and height == width else None


def default_image_size(model) -> int:
    """The model's own input size, else the paper's 224."""
    return fixed_image_size(model) or BASE_SIZE


def with_image_size(model, size: int):
    """The same weights taking `size` px inputs (a model saved with a fixed input is rebuilt
    from its config with a free one; convolutions and the global mean do not care)."""
    import keras

    height, width = model.input_shape[1:3]
    if height in (None, size) and width in (None, size):
        return model
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            shape = layer["config"]["batch_shape"]
            layer["config"]["batch_shape"] = [shape[0], None, None, shape[-1]]
    clone = keras.Model.from_config(config)
    clone.set_weights([w.numpy() for w in model.weights])
    return clone


def model_label(model) -> str:
    """A results-table name: the model's name, with its width when not the paper's 64
    (e.g. `resnet_1_1_1_1_w16`)."""
    from mlimages.paper.model import find_layer

    width = find_layer(model, "init.init_conv").filters
    return model.name if width == PAPER_WIDTH else f"{model.name}_w{width}"
