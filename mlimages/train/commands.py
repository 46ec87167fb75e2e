"""`mlimages pretrain`, `finetune` and `plan`: training runs and what they cost."""

from __future__ import annotations

import argparse

from mlimages.core.verbs import Verbs, emit, json_arg, profile_args
from mlimages.paper.commands import DEPTH_HELP
from mlimages.paper.facts import BASE_SIZE, PAPER_CLASSES, PAPER_DEPTH, PAPER_WIDTH


def cmd_pretrain(args: argparse.Namespace) -> None:
    import os
    from pathlib import Path

    from mlimages.config import layout
    from mlimages.config.params import load_params, parse_override
    from mlimages.train import horovod_backend, pretrain
    from mlimages.train.distributed import WORKER_ENV, launch_local_workers

    overrides = dict(parse_override(o) for o in args.overrides)
    if args.backend:
        overrides["pretrain.backend"] = args.backend  # recorded in params.yaml, passed to workers
    params = load_params(args.params, overrides)
    workers = args.workers or params.pretrain.workers
    out = Path(args.out) if args.out else params.stage_dir(layout.PRETRAIN)
    horovod = params.pretrain.backend == "horovod"
    if horovod and not horovod_backend.launched_by_horovodrun():
        # horovodrun starts the workers (Gloo), even one, with Horovod's Python (.venv-horovod).
        argv = pretrain.command(args.params, overrides, out, workers)
        emit(horovod_backend.launch(argv, workers, out), args.json)
        return
    if not horovod and workers > 1 and WORKER_ENV not in os.environ:
        # One process a worker on loopback, each with its TF_CONFIG: the multi-node code path.
        argv = pretrain.command(args.params, overrides, out, workers)
        done = launch_local_workers(argv, workers, out / "workers")
        if done.returncode != 0:
            raise RuntimeError(f"pretraining with {workers} workers failed: {done.stdout[-2000:]}")
        print(done.stdout.strip())
        return
    emit(pretrain.run_pretrain_stage(params, out), args.json)


def cmd_finetune(args: argparse.Namespace) -> None:
    from mlimages.config.params import load_params
    from mlimages.train import finetune

    params = load_params(args.params, args.overrides)
    emit(finetune.run_finetune_stage(params, args.ckpt, args.seed), args.json)


def cmd_plan(args: argparse.Namespace) -> None:
    from mlimages.paper.facts import ORIGINAL_BYTES
    from mlimages.train import plan

    if args.paper:
        run = plan.paper_run(args.price, args.mbit_per_s or 1000.0)
        arithmetic = plan.paper_arithmetic()
        emit(
            {"plan": run.as_dict(), "arithmetic": arithmetic},
            args.json,
            lambda r: "\n".join(r["arithmetic"]),
        )
        return
    if args.images is None:  # a profile's own pretraining, as `mlimages study` would run it
        from mlimages.config.params import load_params

        params = load_params(args.params, args.overrides)
        emit(plan.profile_plan(params, args.gpu, args.gpus or 1).as_dict(), args.json)
        return
    if args.epochs is None:
        raise ValueError("--images needs --epochs")
    per_image = args.bytes_per_image
    original = args.bytes_per_original
    if args.download_metrics:
        measured = plan.measured_bytes(args.download_metrics)
        per_image = per_image or measured.stored_per_image
        original = original or measured.original_per_image
    result = plan.plan(
        args.images,
        args.epochs,
        depth=args.depth,
        blocks=args.blocks,
        width=args.width,
        image_size=args.image_size,
        num_classes=args.num_classes,
        gpu=args.gpu or "A100-80GB",
        gpus=args.gpus or 1,
        images_per_s=args.images_per_s,
        scaling=args.scaling,
        bytes_per_image=per_image,
        max_side=args.max_side,
        bytes_per_original=original or ORIGINAL_BYTES,
        download_mbit_per_s=args.mbit_per_s or 1000.0,
        price_per_gpu_hour=args.price,
    )
    emit(result.as_dict(), args.json)


def add_pretrain(verbs: Verbs) -> None:
    """`pretrain`."""
    p = verbs.add_parser("pretrain", help="multi-label pretraining (notebook 04)")
    profile_args(p)
    p.add_argument("--workers", type=int, help="local worker processes (default: pretrain.workers)")
    p.add_argument(
        "--backend", choices=["tf", "horovod"], help="default: pretrain.backend (tf.distribute)"
    )
    p.add_argument("--out", help="run folder (default: runs/<profile>/pretrain)")
    json_arg(p)
    p.set_defaults(func=cmd_pretrain)


def add_finetune(verbs: Verbs) -> None:
    """`finetune`."""
    p = verbs.add_parser("finetune", help="fine-tune checkpoint 1..6 on the target (notebook 05)")
    profile_args(p)
    p.add_argument("--ckpt", type=int, help="checkpoint setting (default: finetune.ckpt)")
    p.add_argument("--seed", type=int, action="append", help="repeatable (default: finetune.seeds)")
    json_arg(p)
    p.set_defaults(func=cmd_finetune)


def add_plan(verbs: Verbs) -> None:
    """`plan`."""
    p = verbs.add_parser("plan", help="disk, download time, GPU-hours, wall time and cost of a run")
    profile_args(p)
    p.add_argument("--paper", action="store_true", help="the paper's run, with the arithmetic")
    p.add_argument("--images", type=int, help="training images (omit: plan the --params profile)")
    p.add_argument("--epochs", type=float)
    p.add_argument("--depth", type=int, default=PAPER_DEPTH, help=DEPTH_HELP)
    p.add_argument("--blocks", type=int, nargs=4, metavar="N", help="overrides --depth")
    p.add_argument("--width", type=int, default=PAPER_WIDTH)
    p.add_argument("--image-size", type=int, default=BASE_SIZE)
    p.add_argument("--num-classes", type=int, default=PAPER_CLASSES)
    p.add_argument("--gpu", help="a GPU of mlimages.train.plan.GPUS (default: A100-80GB)")
    p.add_argument("--gpus", type=int, help="GPU count (default 1)")
    p.add_argument("--images-per-s", type=float, help="measured training rate a GPU")
    p.add_argument("--scaling", type=float, help="multi-GPU efficiency (default: the table's)")
    p.add_argument("--bytes-per-image", type=float, help="stored bytes an image")
    p.add_argument("--max-side", type=int, default=320, help="for the stored-size estimate")
    p.add_argument("--download-metrics", help="a download stage's metrics.json (measured bytes)")
    p.add_argument("--bytes-per-original", type=float, help="default 2 MB")
    p.add_argument("--mbit-per-s", type=float, help="download bandwidth (default 1000)")
    p.add_argument("--price", type=float, help="USD a GPU-hour (no cost without it)")
    json_arg(p)
    p.set_defaults(func=cmd_plan)
