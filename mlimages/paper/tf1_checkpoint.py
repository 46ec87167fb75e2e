"""The authors' TF1 checkpoints, read and written: TensorFlow only.

Reading and writing TF1 name-based checkpoints needs TensorFlow's checkpoint reader and
`SaveV2`, so these functions live apart from `mlimages.paper.model`, which builds the network on any
Keras 3 backend. `convert_tf1` is the bridge for the other backends: run it where TensorFlow
is installed, and the `.keras` file it writes opens under JAX and PyTorch too (the model is
built-in layers only).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from mlimages.core.atomic import atomic_path, write_text_atomic
from mlimages.paper.facts import PAPER_WIDTH
from mlimages.paper.model import (
    PORTABLE_SEPARATOR,
    LoadReport,
    assign_by_name,
    build_resnet,
    tf1_variables,
)


def load_tf1_checkpoint(
    model: keras.Model, path: str | os.PathLike, *, skip_logits: bool = False
) -> LoadReport:
    """Assign an authors'-format checkpoint to `model` by variable name.

    `path` is a checkpoint prefix or a folder with a `checkpoint` file. Every model variable
    must be present (the logits may be skipped, e.g. for fine-tuning a new head); a missing
    name or a shape mismatch stops with the variable's name. Names in the checkpoint that the
    model has no variable for (global_step, optimiser slots, other heads) are reported.
    """
    prefix = _checkpoint_prefix(path)
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    return assign_by_name(model, shapes, reader.get_tensor, prefix, skip_logits=skip_logits)


def export_tf1_checkpoint(model: keras.Model, prefix: str | os.PathLike) -> Path:
    """Write `model` as a TF1 name-based checkpoint under the authors' names.

    Their `finetune.py`/`extract_feature.py` (and `load_tf1_checkpoint`) restore it by name.
    The files are written under a temporary prefix and renamed, then a `checkpoint` state file
    naming the prefix is written next to them, as `tf.train.Saver` does.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    variables = tf1_variables(model)
    names = sorted(variables)
    # SaveV2 names both files from one prefix, which one `atomic_path` cannot give: they are
    # written under a temporary prefix and renamed one by one.
    tmp = prefix.with_name(f".{prefix.name}.tmp{os.getpid()}")
    tf.raw_ops.SaveV2(
        prefix=str(tmp),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.convert_to_tensor(variables[n].value) for n in names],
    )
    for suffix in (".index", ".data-00000-of-00001"):
        os.replace(f"{tmp}{suffix}", f"{prefix}{suffix}")
    write_text_atomic(
        prefix.parent / "checkpoint",
        f'model_checkpoint_path: "{prefix.name}"\nall_model_checkpoint_paths: "{prefix.name}"\n',
    )
    return prefix


def _checkpoint_prefix(path: str | os.PathLike) -> str:
    path = Path(path)
    if path.is_dir():
        latest = tf.train.latest_checkpoint(str(path))
        if latest is None:
            raise FileNotFoundError(f"{path}: no checkpoint state file naming a checkpoint")
        return latest
    if not Path(f"{path}.index").is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here (expected {path}.index)")
    return str(path)


def convert_tf1(
    checkpoint: str | os.PathLike,
    depth: int | None,
    num_classes: int,
    out: str | os.PathLike,
    *,
    blocks: Sequence[int] | None = None,
    width: int = PAPER_WIDTH,
) -> Path:
    """An authors'-format checkpoint -> a `.keras` file (NHWC input in [-1, 1], logits out)
    that opens on every Keras backend: layer names joined with `-`, as PyTorch needs."""
    out = Path(out)
    if out.suffix != ".keras":
        raise ValueError(f"{out}: expected a file name ending in .keras")
    model = build_resnet(
        num_classes, depth, blocks=blocks, width=width, separator=PORTABLE_SEPARATOR
    )
    load_tf1_checkpoint(model, checkpoint)
    with atomic_path(out) as tmp:
        model.save(tmp)
    return out
