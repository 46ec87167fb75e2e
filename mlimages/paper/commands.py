"""`mlimages model`: the paper's ResNet and the authors' TF1 checkpoints."""

from __future__ import annotations

import argparse

from mlimages.core.verbs import Verbs, emit, json_arg
from mlimages.paper.facts import DEPTHS, PAPER_DEPTH, PAPER_WIDTH

DEPTH_HELP = (
    f"{', '.join(map(str, list(DEPTHS)[:-1]))} or {list(DEPTHS)[-1]} (default {PAPER_DEPTH})"
)


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, default=PAPER_DEPTH, help=DEPTH_HELP)
    parser.add_argument("--num-classes", type=int, required=True)
    parser.add_argument(
        "--blocks", type=int, nargs=4, metavar="N", help="blocks per stage; overrides --depth"
    )
    parser.add_argument(
        "--width", type=int, default=PAPER_WIDTH, help=f"stem filters (paper: {PAPER_WIDTH})"
    )


def cmd_model_summary(args: argparse.Namespace) -> None:
    from mlimages.paper.model import build_resnet, summary

    model = build_resnet(args.num_classes, args.depth, blocks=args.blocks, width=args.width)
    emit({"model": model.name, "num_classes": args.num_classes, **summary(model)}, args.json)


def cmd_model_convert_tf1(args: argparse.Namespace) -> None:
    from mlimages.paper.tf1_checkpoint import convert_tf1

    out = convert_tf1(
        args.checkpoint,
        args.depth,
        args.num_classes,
        args.out,
        blocks=args.blocks,
        width=args.width,
    )
    emit({"out": str(out)}, args.json)


def add_model(verbs: Verbs) -> None:
    """`model summary` and `model convert-tf1`."""
    model = verbs.add_parser("model", help="the paper's ResNet and the authors' checkpoints")
    model_verbs = model.add_subparsers(dest="action", required=True)
    p = model_verbs.add_parser("summary", help="trainable parameters and TF1 variables")
    _model_args(p)
    json_arg(p)
    p.set_defaults(func=cmd_model_summary)
    p = model_verbs.add_parser(
        "convert-tf1", help="an authors'-format TF1 checkpoint -> a .keras model file"
    )
    p.add_argument("checkpoint", help="checkpoint prefix, or a folder with a `checkpoint` file")
    _model_args(p)
    p.add_argument("--out", required=True, help="output .keras file")
    json_arg(p)
    p.set_defaults(func=cmd_model_convert_tf1)
