"""`mlimages metrics`, `evaluate`, `tag` and `features`: what a checkpoint scores."""

from __future__ import annotations

import argparse
from typing import Any

from mlimages.core.verbs import Verbs, emit, json_arg, profile_args


def _checkpoint_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ckpt", required=True, help="run folder, .keras file, or authors' TF1 checkpoint prefix"
    )
    parser.add_argument("--depth", type=int, help="TF1 only: 50/101/152 (default: read from it)")
    parser.add_argument("--num-classes", type=int, help="TF1 only (default: read from it)")
    parser.add_argument("--blocks", type=int, nargs=4, metavar="N", help="TF1 only")
    parser.add_argument("--width", type=int, help="TF1 only (default: read from it)")
    parser.add_argument("--image-size", type=int, help="default: the model's, else 224")
    parser.add_argument("--batch", type=int, default=32, help="images a forward pass")


def _architecture(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "depth": args.depth,
        "num_classes": args.num_classes,
        "blocks": args.blocks,
        "width": args.width,
    }


def cmd_metrics(args: argparse.Namespace) -> None:
    from mlimages.core.metrics import NpySource, multilabel_metrics

    source = NpySource(args.scores, args.labels)
    result = multilabel_metrics(source, (args.k,), args.threshold, args.score_threshold)
    summary = result.summary()
    at_k = {f"{m}_at_k": summary.pop(f"{m}_at_{args.k}") for m in result.instance[args.k]}
    emit({"k": args.k, **at_k, **summary}, args.json)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from mlimages.config.params import load_params
    from mlimages.evaluate import checkpoints

    params = load_params(args.params, args.overrides)
    if args.ckpt is None:
        summary = checkpoints.run_evaluate_stage(params)["summary"]
    else:
        if args.out is None:
            raise ValueError("--ckpt needs --out (a folder for its metrics.json and tables)")
        summary = checkpoints.evaluate_checkpoint(
            params, args.ckpt, args.out, args.split, args.image_size, args.sizes
        )
    emit(summary, args.json)


def cmd_tag(args: argparse.Namespace) -> None:
    from mlimages.evaluate import tagging

    dictionary = args.dictionary
    if dictionary is None:
        from mlimages.config.params import load_params
        from mlimages.evaluate.checkpoints import profile_dictionary

        dictionary = profile_dictionary(load_params(args.params, args.overrides))
        if dictionary is None:
            raise ValueError(f"profile {args.params} names no dictionary; pass --dictionary")
    tags = tagging.run_tagging(
        args.images, args.ckpt, dictionary, args.top_k, args.leaves_only, args.threshold,
        args.image_size, args.batch, **_architecture(args),
    )  # fmt: skip

    def text(entries: list[dict[str, Any]]) -> str:
        lines = []
        for entry in entries:
            lines.append(entry["image"])
            lines += [
                f"  {t['score']:.4f}  {t['name']} ({t['wnid']}, {t['index']})"
                for t in entry["tags"]
            ]
        return "\n".join(lines)

    emit(tags, args.json, text)


def cmd_features(args: argparse.Namespace) -> None:
    from mlimages.evaluate.features import run_features

    result = run_features(
        args.inputs, args.ckpt, args.out, args.image_size, args.ten_crop, args.batch,
        **_architecture(args),
    )  # fmt: skip
    emit(result, args.json, lambda r: f"{r['out']}: {r['shape'][0]} x {r['shape'][1]}")


def add_metrics(verbs: Verbs) -> None:
    """`metrics`."""
    p = verbs.add_parser("metrics", help="multi-label figures of saved scores and labels (.npy)")
    p.add_argument("--scores", required=True, help="[images, classes] scores, .npy")
    p.add_argument("--labels", required=True, help="[images, classes] labels or confidences, .npy")
    p.add_argument("--k", type=int, required=True, help="top-k for the instance-level figures")
    p.add_argument("--threshold", type=float, default=0.5, help="a label >= this is a positive")
    p.add_argument(
        "--score-threshold", type=float, default=0.5, help="class-level: predicted at >= this"
    )
    json_arg(p)
    p.set_defaults(func=cmd_metrics)


def add_evaluate(verbs: Verbs) -> None:
    """`evaluate`."""
    p = verbs.add_parser("evaluate", help="the paper's metrics on records (notebook 06)")
    profile_args(p)
    p.add_argument("--ckpt", help="one checkpoint (default: the profile's whole stage)")
    p.add_argument("--out", help="folder for --ckpt's metrics.json and tables")
    p.add_argument("--split", help="records split (default: by the checkpoint's classes)")
    p.add_argument("--image-size", type=int, help="multi-label size (default: the profile's)")
    p.add_argument("--sizes", type=int, nargs="+", help="single-label sizes (default: finetune's)")
    json_arg(p)
    p.set_defaults(func=cmd_evaluate)


def add_tag(verbs: Verbs) -> None:
    """`tag`."""
    p = verbs.add_parser("tag", help="top tags of images over all classes of a checkpoint")
    p.add_argument("images", nargs="+", help="images, or lists of image paths (one a line)")
    _checkpoint_args(p)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--leaves-only", action="store_true", help="only classes without children")
    p.add_argument("--threshold", type=float, help="drop tags scoring below this")
    p.add_argument("--dictionary", help="class names (default: the --params profile's)")
    profile_args(p)
    json_arg(p)
    p.set_defaults(func=cmd_tag)


def add_features(verbs: Verbs) -> None:
    """`features`."""
    p = verbs.add_parser("features", help="pooled features of images into a .npy file")
    p.add_argument("inputs", nargs="+", help="images, or lists of image paths (one a line)")
    _checkpoint_args(p)
    p.add_argument("--out", required=True, help="[images, dim] float32 .npy, rows in input order")
    p.add_argument(
        "--ten-crop", action="store_true", help="average 4 corners + centre and their mirrors"
    )
    json_arg(p)
    p.set_defaults(func=cmd_features)
