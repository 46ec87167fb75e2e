"""Training step of our ResNet-101 against `keras.applications.ResNet101`, in the same run.

Both models train on the same synthetic batch with the same step (forward, softmax
cross-entropy, backward, momentum SGD) in one `tf.function`. The two architectures differ
(ours has no max-pool, pre-activation BN, stride 2 inside stage 0), so speed is compared as
achieved FLOP/s: FLOPs are *counted* from each step's own graph, summing TensorFlow's
registered per-op statistics (the `tf.profiler` float_ops registry: convolutions and their
two backprops, matmuls, element-wise ops) over the ops the step actually runs (ops whose
results nothing uses, e.g. the gradient of the input images, are pruned as TF prunes them).
The counter checks itself first: on a small model its forward Conv2D + MatMul count must
equal an analytic per-layer count.

CPU mode (default): batch 16 x 224, fp32, steps of the two models interleaved (the machine is
shared), best step time (other processes only ever add time: the fastest step is the
closest to the step's own cost; medians are reported too); goal: our FLOP/s >= 0.95 x the
reference's.
GPU mode (`--gpu`): mixed float16 with loss scaling, XLA, a larger batch; images/s; goal: our
ResNet-101 >= 2,500 images/s on one H200 (the data are synthetic tensors already on the
device: this measures the step, not the input pipeline), median step time. Prints one JSON
object; exits 1 when a goal is missed.

    python benchmarks/train_step.py [--steps 5] [--batch 16] [--image-size 224]
    python benchmarks/train_step.py --gpu [--steps 50] [--batch 256]
    python benchmarks/train_step.py --gpu --rehearse --batch 2 --image-size 32 --steps 1
    python benchmarks/train_step.py --backend jax|torch [--gpu] [...]

Other Keras backends (`--backend jax|torch`, in an environment with them, e.g.
`.venv-backends`): the same models and step (softmax cross-entropy, momentum SGD) through
Keras's own trainer (`train_on_batch`), which each backend runs natively; mixed float16 with
loss scaling and compilation on the GPU, and compiled on the CPU under JAX. The FLOP counter
reads TensorFlow graphs, so these runs report images/s of both models and their ratio, with
no goal.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # Keras is imported once --backend has chosen its backend (main)
    import keras
    import tensorflow as tf

CPU_GOAL = 0.95  # our FLOP/s over the reference's
GPU_GOAL = 2500.0  # images/s of our ResNet-101 on one H200
NUM_CLASSES = 1000
BACKENDS = ("tensorflow", "jax", "torch")


def live_ops(graph: tf.Graph) -> list[tf.Operation]:
    """The ops a function call runs: ancestors of its outputs and of its stateful ops."""
    roots = [t.op for t in graph.outputs] + list(getattr(graph, "control_outputs", []))
    roots += [op for op in graph.get_operations() if op._is_stateful]
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return [op for op in graph.get_operations() if op.name in seen]


def counted_flops(graph: tf.Graph, types: set[str] | None = None) -> int:
    """Sum of the registered `flops` statistics of the live ops (of `types`, if given)."""
    from tensorflow.python.framework import ops as tf_ops

    total = 0.0
    for op in live_ops(graph):
        if types is not None and op.type not in types:
            continue
        try:
            stats = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops")
        except ValueError:  # no statistics registered (Relu, Pad, Reshape, ...): no FLOPs
            continue
        total += float(stats.value or 0)
    return int(total)


def analytic_forward_flops(model: keras.Model, batch: int) -> int:
    """2 x multiply-adds of every Conv2D and Dense layer, from the layers' shapes."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in, _ = layer.kernel.shape
            total += 2 * batch * h * w * c_out * kh * kw * c_in
        elif isinstance(layer, keras.layers.Dense):
            c_in, c_out = layer.kernel.shape
            total += 2 * batch * c_in * c_out
    return total


def check_counter() -> None:
    """The graph count agrees with the analytic one on a small model of ours."""
    import tensorflow as tf

    from mlimages.paper.model import build_resnet

    model = build_resnet(10, blocks=(1, 2, 1, 1), width=8, image_size=40)
    forward = tf.function(lambda x: model(x, training=False))
    graph = forward.get_concrete_function(tf.TensorSpec([3, 40, 40, 3])).graph
    counted = counted_flops(graph, {"Conv2D", "MatMul"})
    expected = analytic_forward_flops(model, 3)
    if counted != expected:
        raise SystemExit(f"FLOP counter disagrees: graph {counted:,} vs analytic {expected:,}")


def make_step(model: keras.Model, optimizer: keras.optimizers.Optimizer, jit: bool):
    import keras
    import tensorflow as tf

    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    @tf.function(jit_compile=jit)
    def step(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            scaled_loss = optimizer.scale_loss(loss) if scaled else loss
        grads = tape.gradient(scaled_loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return step


def prepare(name: str, model: keras.Model, batch: int, size: int, gpu: bool) -> dict:
    import keras
    import tensorflow as tf

    optimizer: keras.optimizers.Optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    if gpu:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    on_gpu = gpu and tf.config.list_physical_devices("GPU")
    with tf.device("/GPU:0" if on_gpu else "/CPU:0"):  # the batch lives where the step runs,
        # so no step pays a host-to-device copy (154 MB at batch 256 x 224)
        images = tf.identity(rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32))
        labels = tf.identity(rng.integers(0, NUM_CLASSES, batch).astype(np.int32))
    step = make_step(model, optimizer, jit=gpu)
    graph = step.get_concrete_function(images, labels).graph
    return {
        "name": name,
        "params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "step": step,
        "args": (images, labels),
        "flops": counted_flops(graph),
        "conv_matmul_flops": counted_flops(
            graph, {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MatMul"}
        ),
        "times": [],
    }


def run_step(entry: dict) -> None:
    start = time.perf_counter()
    float(entry["step"](*entry["args"]))  # the loss value: waits for the step to finish
    entry["times"].append(time.perf_counter() - start)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
        help="Keras backend (default $KERAS_BACKEND, else tensorflow); FLOPs on tensorflow only",
    )
    parser.add_argument("--gpu", action="store_true", help="mixed precision + XLA, images/s")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (5 CPU, 50 GPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (tracing)")
    parser.add_argument("--batch", type=int, default=None, help="default 16 CPU, 256 GPU")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--out-json", type=Path, default=None)
    parser.add_argument(
        "--rehearse",
        action="store_true",
        help="with --gpu: its settings on the CPU (use a small size), no goal; proves the GPU "
        "path runs before GPU time is spent",
    )
    args = parser.parse_args(argv)
    if args.rehearse and not args.gpu:
        parser.error("--rehearse goes with --gpu")
    args.steps = args.steps or (50 if args.gpu else 5)
    args.batch = args.batch or (256 if args.gpu else 16)
    return args


def select_backend(backend: str) -> None:
    """Keras reads KERAS_BACKEND once, at its first import: set it before that import."""
    if "keras" in sys.modules and sys.modules["keras"].config.backend() != backend:
        raise SystemExit(f"--backend {backend}: Keras is already running on another backend")
    os.environ["KERAS_BACKEND"] = backend


def build_models(size: int, policy: str) -> tuple[keras.Model, keras.Model]:
    """Our ResNet-101 and `keras.applications.ResNet101`, both in `policy`."""
    import keras

    from mlimages.paper.model import build_resnet

    keras.mixed_precision.set_global_policy(policy)  # keras.applications follows the global one
    keras.utils.set_random_seed(0)
    ours = build_resnet(NUM_CLASSES, 101, image_size=size, dtype=policy)
    reference = keras.applications.ResNet101(
        weights=None,
        input_shape=(size, size, 3),
        classes=NUM_CLASSES,
        classifier_activation=None,
    )
    return ours, reference


def time_steps(entries: list[dict], warmup: int, steps: int) -> None:
    for entry in entries:
        for _ in range(warmup):
            run_step(entry)
        entry["times"].clear()
    for _ in range(steps):  # interleaved: load from other processes hits both alike
        for entry in entries:
            run_step(entry)


def emit(result: dict, ok: bool, out_json: Path | None) -> int:
    text = json.dumps(result, indent=2)
    print(text)
    if out_json:
        out_json.write_text(text + "\n")
    if not ok:
        print("GOAL MISSED", file=sys.stderr)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    select_backend(args.backend)
    if args.backend == "tensorflow":
        return run_tensorflow(args)
    return run_other_backend(args)


def run_tensorflow(args: argparse.Namespace) -> int:
    """Both models' steps as `tf.function`s, their FLOPs counted from the step graphs."""
    import tensorflow as tf

    steps, batch, size = args.steps, args.batch, args.image_size
    if args.gpu and not args.rehearse and not tf.config.list_physical_devices("GPU"):
        print("--gpu: no GPU visible to TensorFlow", file=sys.stderr)
        return 2

    check_counter()
    policy = "mixed_float16" if args.gpu else "float32"
    ours, reference = build_models(size, policy)
    entries = [
        prepare("ours_resnet101", ours, batch, size, args.gpu),
        prepare("keras_applications_resnet101", reference, batch, size, args.gpu),
    ]
    time_steps(entries, args.warmup, steps)

    result: dict = {
        "mode": "gpu" if args.gpu else "cpu",
        "backend": "tensorflow",
        "device": tf.config.list_physical_devices("GPU")[0].name
        if args.gpu and not args.rehearse
        else "cpu",
        "dtype_policy": policy,
        "xla": args.gpu,
        "batch": batch,
        "image_size": size,
        "steps": steps,
        "models": {},
    }
    for entry in entries:
        # CPU: the fastest step (a shared machine only adds time); GPU: the median step.
        best = min(entry["times"]) if not args.gpu else statistics.median(entry["times"])
        result["models"][entry["name"]] = {
            "params": entry["params"],
            "step_flops": entry["flops"],
            "conv_matmul_share": entry["conv_matmul_flops"] / entry["flops"],
            "timed_step_s": best,
            "median_step_s": statistics.median(entry["times"]),
            "step_times_s": entry["times"],
            "images_per_s": batch / best,
            "tflop_per_s": entry["flops"] / best / 1e12,
        }
    ours_r, ref_r = (result["models"][e["name"]] for e in entries)
    result["flops_rate_ratio"] = ours_r["tflop_per_s"] / ref_r["tflop_per_s"]
    result["images_per_s_ratio"] = ours_r["images_per_s"] / ref_r["images_per_s"]
    if args.rehearse:
        result["goal"] = "none: a rehearsal of the GPU mode"
        ok = True
    elif args.gpu:
        result["goal"] = f"ours >= {GPU_GOAL:.0f} images/s"
        ok = ours_r["images_per_s"] >= GPU_GOAL
    else:
        result["goal"] = f"flops_rate_ratio >= {CPU_GOAL}"
        ok = result["flops_rate_ratio"] >= CPU_GOAL
    result["goal_met"] = None if args.rehearse else ok
    return emit(result, ok, args.out_json)


def prepare_keras(name: str, model: keras.Model, batch: int, size: int, gpu: bool) -> dict:
    """The same step through Keras's own trainer, which each backend implements natively;
    on the GPU with loss scaling and compiled (XLA under JAX, torch.compile under PyTorch)."""
    import keras

    optimizer: keras.optimizers.Optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    if gpu:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    jit = gpu or keras.config.backend() == "jax"  # JAX runs op by op otherwise
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss, jit_compile=jit)
    rng = np.random.default_rng(0)
    # Tensors of the backend are placed on its default device (the GPU where there is one),
    # so no step pays a host-to-device copy.
    images = keras.ops.convert_to_tensor(rng.uniform(-1, 1, (batch, size, size, 3)), "float32")
    labels = keras.ops.convert_to_tensor(rng.integers(0, NUM_CLASSES, batch), "int32")
    return {
        "name": name,
        "params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "step": model.train_on_batch,  # returns the loss as a float: waits for the step
        "args": (images, labels),
        "jit_compile": jit,
        "times": [],
    }


def backend_device(backend: str) -> str:
    if backend == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def run_other_backend(args: argparse.Namespace) -> int:
    """JAX or PyTorch: images/s of both models in one run and their ratio, no goal (the FLOP
    counter reads TensorFlow graphs, and images/s alone compares unequal architectures)."""
    from mlimages.paper.model import gpu_visible

    if args.gpu and not args.rehearse and not gpu_visible():
        print(f"--gpu: no GPU visible to {args.backend}", file=sys.stderr)
        return 2
    policy = "mixed_float16" if args.gpu else "float32"
    ours, reference = build_models(args.image_size, policy)
    entries = [
        prepare_keras("ours_resnet101", ours, args.batch, args.image_size, args.gpu),
        prepare_keras(
            "keras_applications_resnet101", reference, args.batch, args.image_size, args.gpu
        ),
    ]
    time_steps(entries, args.warmup, args.steps)
    result: dict = {
        "mode": "gpu" if args.gpu else "cpu",
        "backend": args.backend,
        "device": backend_device(args.backend) if args.gpu and not args.rehearse else "cpu",
        "dtype_policy": policy,
        "jit_compile": entries[0]["jit_compile"],
        "batch": args.batch,
        "image_size": args.image_size,
        "steps": args.steps,
        "models": {},
    }
    for entry in entries:
        best = min(entry["times"]) if not args.gpu else statistics.median(entry["times"])
        result["models"][entry["name"]] = {
            "params": entry["params"],
            "timed_step_s": best,
            "median_step_s": statistics.median(entry["times"]),
            "step_times_s": entry["times"],
            "images_per_s": args.batch / best,
        }
    ours_r, ref_r = (result["models"][e["name"]] for e in entries)
    result["images_per_s_ratio"] = ours_r["images_per_s"] / ref_r["images_per_s"]
    result["goal"] = f"none on {args.backend}: images/s reported, FLOPs counted on tensorflow"
    result["goal_met"] = None
    return emit(result, True, args.out_json)


if __name__ == "__main__":
    sys.exit(main())
