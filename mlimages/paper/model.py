"""The paper's pre-activation ResNet (the authors' `models/resnet.py`) in Keras 3; their TF1 names.

The model is a Functional model of built-in Keras layers only, so a saved `.keras` file opens
with `keras.models.load_model` without custom objects (the authors' meta graph holds an
internal op and cannot be imported). Layer names spell the authors' variable scopes with `.`
for `/` (Keras forbids `/` in names), which makes the map to and from their TF1 variable names
a pure string transform; checkpoints load by that name map, never by graph structure.

Nothing here needs TensorFlow: the model builds and runs on Keras 3's TensorFlow, JAX and
PyTorch backends. PyTorch forbids `.` in names, so there (and in the files `convert_tf1`
writes for every backend) `-` joins the scopes instead. Reading and writing the authors' TF1
checkpoints needs TensorFlow: `mlimages.paper.tf1_checkpoint`.

Architecture: stem = pad 3, 7x7/2 conv, 64 filters, nothing after it (no BN, ReLU
or max-pool); bottleneck blocks are pre-activation (BN-ReLU before every conv); the first block
of every stage, stage 0 included, has stride 2 on its 3x3 conv and a BN-ReLU-1x1 projection
shortcut; stride-2 convs pad `(k-1)//2` before and the rest after, then run VALID, stride-1
convs run SAME; BN momentum 0.997, epsilon 1e-5; convs without bias; head = BN-ReLU-global
mean (the features), then a dense layer with bias (the logits).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from mlimages.paper.facts import (
    BN_EPSILON,
    BN_MOMENTUM,
    DEPTHS,
    PAPER_DEPTH,
    PAPER_WIDTH,
    model_name,
)

FEATURES_LAYER = "global_pool.mean"
LOGITS_LAYER = "logits"
# PyTorch refuses `.` in parameter names, so under its backend, and in the `.keras` files that
# `convert_tf1` writes for every backend, the scopes are joined with `-` instead (a character
# no scope of the authors' holds, so the name map stays a pure string transform).
SEPARATORS = (".", "-")
PORTABLE_SEPARATOR = "-"

# Keras weight name -> the TF1 sub-scope and variable name `tf.layers` gave it.
_CONV_SCOPE = "conv2d"
_BN_SCOPE = "batch_normalization"
_DENSE_SCOPE = "dense"


def stage_blocks(depth: int | None = None, blocks: Sequence[int] | None = None) -> tuple[int, ...]:
    """Blocks per stage: explicit `blocks` (reduced variants) or the paper's depth 50/101/152."""
    if blocks is not None:
        if len(blocks) != 4 or any(int(b) < 1 for b in blocks):
            raise ValueError(f"model blocks: got {list(blocks)}; expected 4 positive integers")
        return tuple(int(b) for b in blocks)
    if depth not in DEPTHS:
        raise ValueError(f"model depth: got {depth!r}; expected one of {sorted(DEPTHS)}")
    return DEPTHS[depth]


def dtype_policy(mixed_precision: bool | None = None) -> str:
    """`mixed_float16` where it pays (a GPU is visible) unless told; float32 on CPU."""
    if mixed_precision is None:
        mixed_precision = gpu_visible()
    return "mixed_float16" if mixed_precision else "float32"


def gpu_visible() -> bool:
    """Whether the Keras backend in use sees a GPU: each backend is asked in its own terms,
    so that building a model needs no TensorFlow under JAX or PyTorch."""
    backend = _backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


def build_resnet(
    num_classes: int,
    depth: int | None = PAPER_DEPTH,
    *,
    blocks: Sequence[int] | None = None,
    width: int = PAPER_WIDTH,
    image_size: int | None = None,
    dtype: str = "float32",
    name: str | None = None,
    separator: str | None = None,
) -> keras.Model:
    """The authors' ResNet as a Keras Functional model: NHWC images in [-1, 1] -> logits.

    `blocks` (4 counts) overrides `depth`; `width` is the stem's filters and stage 0's
    bottleneck width (stage outputs are 4, 8, 16, 32 times it; the paper's is 64). `dtype` is
    a Keras dtype policy such as `mixed_float16`; the logits layer always computes in float32
    so the loss sees float32 logits. `separator` joins the scopes of a layer name: `.` by
    default, `-` under PyTorch (which refuses `.`) and for files meant for every backend.
    The default `name` leaves the width out (`model_name`).
    """
    sep = separator or default_separator()
    if sep not in SEPARATORS:
        raise ValueError(f"separator: got {sep!r}; expected one of {SEPARATORS}")
    counts = stage_blocks(depth, blocks)
    if width < 1:
        raise ValueError(f"model width: got {width}; expected a positive integer")
    images = keras.Input(shape=(image_size, image_size, 3), name="images")
    x = _conv(images, f"init{sep}init_conv", 7, width, 2, dtype, sep)
    for stage, count in enumerate(counts):
        out = 4 * width * 2**stage
        for block in range(count):
            scope = f"stages_{stage}_block_{block}"
            x = _bottleneck(x, scope, out, 2 if block == 0 else 1, block == 0, dtype, sep)
    x = _bn_relu(x, f"global_pool{sep}bn", dtype, sep)
    features = FEATURES_LAYER.replace(".", sep)
    feat = keras.layers.GlobalAveragePooling2D(name=features, dtype=dtype)(x)
    logits = keras.layers.Dense(num_classes, name=LOGITS_LAYER, dtype="float32")(feat)
    if name is None:
        name = model_name(depth, None if blocks is None else counts)
    return keras.Model(images, logits, name=name)


def default_separator() -> str:
    """`.` (the authors' scope path with `.` for `/`), except under PyTorch: `-`."""
    return PORTABLE_SEPARATOR if _backend() == "torch" else "."


def _backend() -> str:
    """The Keras backend's name; `keras.backend.backend()` is Keras 2's spelling too (the
    Horovod environment's), where `keras.config` does not exist."""
    return keras.backend.backend()


def find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """`model.get_layer` by the `.`-joined name, whichever separator the model was built with."""
    for sep in SEPARATORS:
        if any(layer.name == name.replace(".", sep) for layer in model.layers):
            return model.get_layer(name.replace(".", sep))
    return model.get_layer(name)  # raises, naming what was asked for


def set_bn_momentum(model: keras.Model, momentum: float) -> None:
    """Keras reads `momentum` at every training call (and saves it in the config), so a
    built model can take a profile's deviation from the authors' 0.997."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def _bottleneck(
    x: keras.KerasTensor,
    scope: str,
    out: int,
    stride: int,
    projection: bool,
    dtype: str,
    sep: str,
) -> keras.KerasTensor:
    shortcut = x
    if projection:
        shortcut = _bn_relu(x, f"{scope}{sep}conv1_b1_bn", dtype, sep)
        shortcut = _conv(shortcut, f"{scope}{sep}conv1_b1", 1, out, stride, dtype, sep)
    y = _bn_relu(x, f"{scope}{sep}conv1_b2_bn", dtype, sep)
    y = _conv(y, f"{scope}{sep}conv1_b2", 1, out // 4, 1, dtype, sep)
    y = _bn_relu(y, f"{scope}{sep}conv2_b2_bn", dtype, sep)
    y = _conv(y, f"{scope}{sep}conv2_b2", 3, out // 4, stride, dtype, sep)
    y = _bn_relu(y, f"{scope}{sep}conv3_b2_bn", dtype, sep)
    y = _conv(y, f"{scope}{sep}conv3_b2", 1, out, 1, dtype, sep)
    return keras.layers.Add(name=f"{scope}{sep}add", dtype=dtype)([y, shortcut])


def _bn_relu(x: keras.KerasTensor, name: str, dtype: str, sep: str) -> keras.KerasTensor:
    x = keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name, dtype=dtype
    )(x)
    return keras.layers.ReLU(name=f"{name}{sep}relu", dtype=dtype)(x)


def _conv(
    x: keras.KerasTensor,
    name: str,
    kernel: int,
    filters: int,
    stride: int,
    dtype: str,
    sep: str,
) -> keras.KerasTensor:
    """The authors' `_pre_padding_conv`: explicit padding before a strided conv, SAME otherwise."""
    if stride > 1 and kernel > 1:
        before = (kernel - 1) // 2
        pad = (before, kernel - 1 - before)
        x = keras.layers.ZeroPadding2D((pad, pad), name=f"{name}{sep}pad", dtype=dtype)(x)
    return keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same" if stride == 1 else "valid",
        use_bias=False,
        # tf.variance_scaling_initializer() of TF 1.x: scale 1, fan_in, truncated normal.
        kernel_initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal"),
        name=name,
        dtype=dtype,
    )(x)


def feature_model(model: keras.Model) -> keras.Model:
    """The same weights, returning `(logits, features)`: features are the pooled [N, C] vector
    (the authors' `net.feat`, squeezed as their `extract_feature.py` does)."""
    feat = find_layer(model, FEATURES_LAYER).output
    return keras.Model(model.input, [model.output, feat], name=f"{model.name}_features")


# --- the two-way map to the authors' TF1 names -------------------------------------------


def tf1_name(layer: keras.layers.Layer, weight_name: str) -> str:
    """The TF1 variable name of one of our weights, e.g. `stages_0_block_0.conv1_b2` + `kernel`
    -> `stages_0_block_0/conv1_b2/conv2d/kernel` (or `-` for `.`: either separator)."""
    scope = layer.name
    for sep in SEPARATORS:
        scope = scope.replace(sep, "/")
    if isinstance(layer, keras.layers.Conv2D):
        return f"{scope}/{_CONV_SCOPE}/{weight_name}"
    if isinstance(layer, keras.layers.BatchNormalization):
        return f"{scope}/{_BN_SCOPE}/{weight_name}"
    if isinstance(layer, keras.layers.Dense):
        return f"{scope}/{_DENSE_SCOPE}/{weight_name}"
    raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no TF1 counterpart")


def keras_name(tf1: str) -> tuple[str, str]:
    """The inverse of `tf1_name`: a TF1 variable name -> (our layer name, weight name)."""
    parts = tf1.split("/")
    if len(parts) < 3 or parts[-2] not in (_CONV_SCOPE, _BN_SCOPE, _DENSE_SCOPE):
        raise ValueError(
            f"TF1 variable {tf1!r}: expected <scope>/(conv2d|batch_normalization|dense)/<weight>"
        )
    return ".".join(parts[:-2]), parts[-1]


def tf1_variables(model: keras.Model) -> dict[str, keras.Variable]:
    """Every variable a TF1 checkpoint of `model` holds (BN moving statistics included)."""
    names: dict[str, keras.Variable] = {}
    for layer in model.layers:
        for weight in layer.weights:
            names[tf1_name(layer, _weight_name(weight))] = weight
    return names


def _weight_name(weight: keras.Variable) -> str:
    return weight.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class LoadReport:
    """What a by-name load did: the checkpoint names used, skipped on request, and left over."""

    loaded: list[str]
    skipped: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def load_keras_weights(
    model: keras.Model, path: str | os.PathLike, *, skip_logits: bool = False
) -> LoadReport:
    """`load_tf1_checkpoint` for a saved `.keras` model (our pretraining run): the same
    by-name rules, the donor's variables named as the authors' would be."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved model here")
    donor = tf1_variables(keras.models.load_model(path))
    shapes = {name: tuple(v.shape) for name, v in donor.items()}
    return assign_by_name(
        model, shapes, lambda name: donor[name].numpy(), str(path), skip_logits=skip_logits
    )


class LogitsMismatchError(ValueError):
    """The checkpoint's classification head does not fit the model's (another class count):
    its own type so that callers can add what their users can change (e.g. a CLI flag)."""


def _is_logits(name: str) -> bool:
    return name.startswith(f"{LOGITS_LAYER}/")


def _head_classes(shapes: Mapping[str, Sequence[int]]) -> int | None:
    """The class count of a checkpoint's head: its bias length, else its kernel's last axis."""
    for name in (f"{LOGITS_LAYER}/dense/bias", f"{LOGITS_LAYER}/dense/kernel"):
        if name in shapes and len(shapes[name]):
            return int(shapes[name][-1])
    return None


def _logits_mismatch(
    source: str, name: str, shapes: Mapping[str, Sequence[int]], wanted: dict
) -> LogitsMismatchError:
    """The error users of the authors' checkpoints meet (`[2048,1000]` vs `[2048,11166]`):
    both shapes, both class counts, and the two ways out."""
    theirs = _head_classes(shapes)
    ours = _head_classes({n: tuple(v.shape) for n, v in wanted.items()})
    return LogitsMismatchError(
        f"{source}: the logits do not match: variable {name!r} has shape "
        f"{list(shapes[name])} in the checkpoint, the model expects {list(wanted[name].shape)} "
        f"(the checkpoint holds a {theirs}-class head, the model has {ours} classes). "
        f"To start a new {ours}-class head on the checkpoint's body, load with "
        "skip_logits=True (as the fine-tuning stage does, `mlimages finetune`); to keep the "
        f"checkpoint's head, build the model with {theirs} classes (num_classes, the CLI's "
        "--num-classes)."
    )


def assign_by_name(
    model: keras.Model,
    shapes: Mapping[str, Sequence[int]],
    value_of: Callable[[str], np.ndarray],
    source: str,
    *,
    skip_logits: bool = False,
) -> LoadReport:
    """Assign named values to `model`'s variables (named as the authors'), all or nothing:
    a missing name or a shape mismatch stops, naming the variable, before anything changes.
    A body mismatch is reported before a head mismatch: a head of another class count is the
    common case (`LogitsMismatchError`, which says how to skip it), a body one is not."""
    wanted = tf1_variables(model)
    skipped = [n for n in wanted if skip_logits and _is_logits(n)]
    missing = sorted(n for n in wanted if n not in shapes and n not in skipped)
    if missing:
        shown = ", ".join(missing[:5]) + (
            f", … ({len(missing)} in all)" if len(missing) > 5 else ""
        )
        hint = (
            " (a checkpoint without a head: load with skip_logits=True to start a new one)"
            if all(_is_logits(n) for n in missing)
            else ""
        )
        raise ValueError(
            f"{source}: checkpoint lacks {len(missing)} model variables: {shown}{hint}"
        )
    mismatched = [
        n for n in wanted if n not in skipped and tuple(shapes[n]) != tuple(wanted[n].shape)
    ]
    body = [n for n in mismatched if not _is_logits(n)]
    if body:
        name = body[0]
        raise ValueError(
            f"{source}: variable {name!r} has shape {list(shapes[name])} in the checkpoint; "
            f"the model expects {list(wanted[name].shape)}"
        )
    if mismatched:  # the kernel first: its [features, classes] is what users recognise
        mismatched.sort(key=lambda n: not n.endswith("/kernel"))
        raise _logits_mismatch(source, mismatched[0], shapes, wanted)
    values = {name: value_of(name) for name in wanted if name not in skipped}
    for name, value in values.items():  # assign only once everything is known to fit
        wanted[name].assign(value.astype(np.dtype(wanted[name].dtype)))
    unused = sorted(n for n in shapes if n not in wanted)
    return LoadReport(loaded=sorted(values), skipped=sorted(skipped), unused=unused)


def summary(model: keras.Model) -> dict[str, int]:
    """Parameter counts, and what a TF1 checkpoint of the model holds."""
    tf1 = tf1_variables(model)
    return {
        "params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "non_trainable_params": int(sum(np.prod(w.shape) for w in model.non_trainable_weights)),
        "tf1_variables": len(tf1),
        "tf1_floats": int(sum(np.prod(v.shape) for v in tf1.values())),
    }
