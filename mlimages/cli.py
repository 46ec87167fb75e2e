"""`mlimages <verb>`: every stage from the shell, `--json` for machines.

Heavy libraries are imported inside the verbs: the statistics verbs must start in well
under a second, so nothing here may pull in TensorFlow or matplotlib at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_PROFILE = "default"
MERGE_VERB = "download merge"  # one parser name: `download`'s list argument is optional


def _emit(payload: Any, as_json: bool, text: Callable[[Any], str] | None = None) -> None:
    """Print `payload`: strict JSON with `--json` (non-finite floats as null), else text."""
    if as_json:
        from mlimages.core.atomic import dumps_json

        print(dumps_json(payload, indent=2))
    elif text is not None:
        print(text(payload))
    elif isinstance(payload, dict):
        width = max((len(k) for k in payload), default=0)
        for key, value in payload.items():
            print(f"{key:<{width}}  {value}")
    else:
        print(payload)


def _profile_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", default=DEFAULT_PROFILE, help="profile name or YAML path (default: %(default)s)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one parameter (repeatable); unknown keys are refused",
    )


def _json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_taxonomy_stats(args: argparse.Namespace) -> None:
    from mlimages.data.taxonomy import load_dictionary

    _emit(load_dictionary(args.dictionary).stats(), args.json)


def cmd_annotations_stats(args: argparse.Namespace) -> None:
    from mlimages.data.label_read import read_label_list
    from mlimages.data.label_table import label_stats

    taxonomy = None
    if args.dictionary:
        from mlimages.data.taxonomy import load_dictionary

        taxonomy = load_dictionary(args.dictionary)
    elif args.close:
        raise SystemExit("--close needs --dictionary (closure follows the hierarchy)")
    num_classes = taxonomy.num_classes if taxonomy else args.num_classes
    table = read_label_list(args.label_list, num_classes=num_classes)
    if args.close:
        table = table.close(taxonomy)
    _emit(label_stats(table, num_classes), args.json)


def cmd_annotations_check(args: argparse.Namespace) -> int:
    from mlimages.data.list_check import check_list, render

    taxonomy = None
    if args.dictionary:
        from mlimages.data.taxonomy import load_dictionary

        taxonomy = load_dictionary(args.dictionary)
    report = check_list(
        args.label_list,
        taxonomy,
        num_classes=args.num_classes,
        published=args.published,
        expect_closed=args.expect_closed,
        examples=args.examples,
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, allow_nan=False))
    else:
        print(render(report))
    return 0 if report.clean else 1


def cmd_params_show(args: argparse.Namespace) -> None:
    from mlimages.config.params import load_params

    params = load_params(args.params, args.overrides)
    if args.json:
        _emit(params.model_dump(mode="json"), True)
    else:
        print(params.to_yaml(), end="")


def cmd_params_check(args: argparse.Namespace) -> int:
    from mlimages.config import preflight
    from mlimages.config.params import load_params

    result = preflight.check(load_params(args.params, args.overrides))
    _emit(result.as_dict(), args.json, lambda _: result.text())
    return 0 if result.ok else 1


def cmd_synth(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mlimages.config.params import load_params
    from mlimages.data.synthetic import generate, statistics

    params = load_params(args.params, args.overrides)
    out = Path(args.out) if args.out else params.run_dir / "data" / "mini"
    dataset = generate(params.synth, out)
    if args.json:
        stats = statistics(dataset, params.pretrain.global_batch)
        _emit({"out": str(dataset.root), **dataset.info["counts"], **stats}, True)
        return
    _emit(
        {"out": str(dataset.root), **dataset.info["counts"], "classes": dataset.info["classes"]},
        False,
    )


def cmd_explore(args: argparse.Namespace) -> None:
    from mlimages.config.params import load_params
    from mlimages.data import explore

    params = load_params(args.params, args.overrides)
    params.write(params.stage_dir(explore.STAGE) / "params.yaml")
    out = explore.save(explore.load(params), params)
    _emit(json.loads((out / "metrics.json").read_text()), args.json)


def cmd_sweep(args: argparse.Namespace) -> None:
    import contextlib
    import sys

    from mlimages.config.params import parse_override
    from mlimages.study.sweep import parse_grid, run_sweep

    overrides = dict(parse_override(o) for o in args.overrides)
    # With --json, stdout holds the JSON alone: the runner's progress lines go to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        table, out = run_sweep(
            args.params, parse_grid(args.grid), args.notebooks, overrides, args.seeds,
            args.ckpts, args.name, args.kernel,
        )  # fmt: skip
    rows = table.astype(object).where(table.notna(), None).to_dict("records")
    _emit(
        {"table": str(out), "points": int(table["point"].nunique()), "rows": rows},
        args.json,
        lambda r: f"{table.to_string(index=False)}\n{r['points']} points; table: {r['table']}",
    )


def cmd_study(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mlimages.config.params import parse_override
    from mlimages.study.runner import run_study

    overrides = dict(parse_override(o) for o in args.overrides)
    runs = run_study(
        args.params,
        overrides,
        notebooks_dir=Path(args.notebooks) if args.notebooks else None,
        only=args.only,
        kernel_name=args.kernel,
    )
    _emit(
        [r.__dict__ for r in runs], args.json, lambda rs: f"study finished: {len(rs)} notebooks ok"
    )


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, default=101, help="50, 101 or 152 (default 101)")
    parser.add_argument("--num-classes", type=int, required=True)
    parser.add_argument(
        "--blocks", type=int, nargs=4, metavar="N", help="blocks per stage; overrides --depth"
    )
    parser.add_argument("--width", type=int, default=64, help="stem filters (paper: 64)")


def cmd_model_summary(args: argparse.Namespace) -> None:
    from mlimages.paper.model import build_resnet, summary

    model = build_resnet(args.num_classes, args.depth, blocks=args.blocks, width=args.width)
    _emit({"model": model.name, "num_classes": args.num_classes, **summary(model)}, args.json)


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
    _emit({"out": str(out)}, args.json)


def _download_params(args: argparse.Namespace):
    """The profile's `download` section with the command line's flags on top."""
    from mlimages.config.params import DownloadParams, load_params

    params = load_params(args.params, args.overrides)
    flags = {
        "workers": args.workers,
        "read_timeout": args.timeout,
        "retries": args.retries,
        "max_side": args.max_side,
        "retry_failed": args.retry_failed or None,
        "file_root": getattr(args, "file_root", None),
        "imagenet_root": getattr(args, "imagenet_root", None),
    }
    merged = {**params.download.model_dump(), **{k: v for k, v in flags.items() if v is not None}}
    return params, DownloadParams.model_validate(merged)


def cmd_subset(args: argparse.Namespace) -> None:
    from mlimages.config.params import SubsetParams
    from mlimages.data import subset
    from mlimages.data.label_read import read_label_list

    taxonomy = None
    if args.dictionary:
        from mlimages.data.taxonomy import load_dictionary

        taxonomy = load_dictionary(args.dictionary)
    table = read_label_list(args.label_list, num_classes=taxonomy and taxonomy.num_classes)
    num_classes = taxonomy.num_classes if taxonomy else int(table.indices.max(initial=0)) + 1
    spec = SubsetParams(
        max_images=args.max_images,
        max_gb=args.max_gb,
        bytes_per_image=args.bytes_per_image,
        min_per_class=args.min_per_class,
        max_per_class=args.max_per_class,
        subtrees=args.subtree,
    )
    chosen = subset.choose(
        table, num_classes, spec, seed=args.seed, max_side=args.max_side, taxonomy=taxonomy
    )
    chosen.write(args.out)
    cover = subset.coverage(table, chosen, num_classes, args.min_per_class)
    _emit({"out": args.out, **cover.to_dict()}, args.json)


def cmd_download(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mlimages.fetch import download

    params, options = _download_params(args)
    if args.label_list is None:  # the whole stage of the profile, as notebook 02 runs it
        if args.shard:
            raise ValueError("--shard is for one list; expected a label list before it")
        if args.out:
            raise ValueError("--out is for one list; the stage writes runs/<profile>/download/")
        params = params.model_copy(update={"download": options})
        params.write(params.stage_dir(download.STAGE) / "params.yaml")
        _emit(download.run_download_stage(params), args.json)
        return
    if not args.out:
        raise ValueError("--out DIR is required with a label list")
    from mlimages.data.label_read import read_label_list

    table = read_label_list(args.label_list, progress=options.progress)
    out = Path(args.out)
    if args.shard:  # this job's part only, into OUT/shard-I-of-N with its shard.json
        from mlimages.fetch import shard

        index, count = shard.parse_shard(args.shard)
        table = shard.select_shard(table, index, count)
        out = shard.shard_dir(out, index, count)
        settings = {"max_side": options.max_side, "quality": options.quality}
        meta = shard.describe(args.label_list, table, index, count, settings)
        out.mkdir(parents=True, exist_ok=True)
        shard.claim_folder(out, meta)
    summary = download.download_list(
        table,
        out,
        options,
        file_root=options.file_root,
        imagenet_root=options.imagenet_root,
    )
    _emit(summary.as_dict(), args.json)


def cmd_download_merge(args: argparse.Namespace) -> None:
    from mlimages.fetch.shard import merge

    _emit(merge(args.out, args.parts, partial=args.partial), args.json)


def cmd_imagenet_extract(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mlimages.data.label_read import read_label_list
    from mlimages.fetch.imagenet import extract

    _, options = _download_params(args)
    table = read_label_list(args.label_list, progress=options.progress)
    _emit(extract(table, args.root, Path(args.out), options).as_dict(), args.json)


def _fetch_args(parser: argparse.ArgumentParser) -> None:
    _profile_args(parser)
    parser.add_argument("--workers", type=int, help="concurrent fetches (download.workers)")
    parser.add_argument("--timeout", type=float, help="read timeout, s (download.read_timeout)")
    parser.add_argument("--retries", type=int, help="download.retries")
    parser.add_argument("--max-side", type=int, help="shorter side at most, px (download.max_side)")
    parser.add_argument("--retry-failed", action="store_true", help="fetch failed keys again")
    _json_arg(parser)


def cmd_records_write(args: argparse.Namespace) -> None:
    from mlimages.config.params import load_params
    from mlimages.input import records

    params = load_params(args.params, args.overrides)
    _emit(records.run_records_stage(params, args.split), args.json)


def cmd_records_inspect(args: argparse.Namespace) -> None:
    from mlimages.input import records

    _emit(
        records.inspect(args.shard, args.limit),
        args.json,
        lambda rows: "\n".join(
            f"{r['name']}  {r['width']}x{r['height']}  {r['labels']}" for r in rows
        ),
    )


def cmd_pipeline_measure(args: argparse.Namespace) -> None:
    from mlimages.config.params import load_params
    from mlimages.input import records

    params = load_params(args.params, args.overrides)
    augment = params.pipeline.augment and not args.no_augment
    index = records.split_index(params, args.split)
    from mlimages.input import pipeline  # TensorFlow: only once the records are found

    mode = pipeline.FINETUNE if index.single_label else pipeline.PRETRAIN
    size = args.image_size or params.pretrain.image_size
    dataset = pipeline.train_dataset(
        index, size, args.batch, index.num_classes, mode, seed=params.seed,
        shuffle_buffer=params.pipeline.shuffle_buffer,
        **{**pipeline.augmentation(params.pipeline, mode), "augment": augment},
    )  # fmt: skip
    measured = pipeline.throughput(dataset, args.images or params.pipeline.throughput_images)
    _emit({"split": args.split, "image_size": size, "augment": augment, **measured}, args.json)


def cmd_pretrain(args: argparse.Namespace) -> None:
    import os
    from pathlib import Path

    from mlimages.config.params import load_params, parse_override
    from mlimages.train import horovod_backend, pretrain
    from mlimages.train.distributed import WORKER_ENV, launch_local_workers

    overrides = dict(parse_override(o) for o in args.overrides)
    if args.backend:
        overrides["pretrain.backend"] = args.backend  # recorded in params.yaml, passed to workers
    params = load_params(args.params, overrides)
    workers = args.workers or params.pretrain.workers
    out = Path(args.out) if args.out else params.stage_dir(pretrain.STAGE)
    horovod = params.pretrain.backend == "horovod"
    if horovod and not horovod_backend.launched_by_horovodrun():
        # horovodrun starts the workers (Gloo), even one, with Horovod's Python (.venv-horovod).
        argv = pretrain.command(args.params, overrides, out, workers)
        _emit(horovod_backend.launch(argv, workers, out), args.json)
        return
    if not horovod and workers > 1 and WORKER_ENV not in os.environ:
        # One process a worker on loopback, each with its TF_CONFIG: the multi-node code path.
        argv = pretrain.command(args.params, overrides, out, workers)
        done = launch_local_workers(argv, workers, out / "workers")
        if done.returncode != 0:
            raise RuntimeError(f"pretraining with {workers} workers failed: {done.stdout[-2000:]}")
        print(done.stdout.strip())
        return
    _emit(pretrain.run_pretrain_stage(params, out), args.json)


def cmd_finetune(args: argparse.Namespace) -> None:
    from mlimages.config.params import load_params
    from mlimages.train import finetune

    params = load_params(args.params, args.overrides)
    _emit(finetune.run_finetune_stage(params, args.ckpt, args.seed), args.json)


def cmd_report(args: argparse.Namespace) -> None:
    from mlimages.config.params import load_params
    from mlimages.report import paper_vs_ours

    params = load_params(args.params, args.overrides)
    _emit(
        paper_vs_ours.run_report_stage(params), args.json, lambda r: f"{r['out']}\n{r['summary']}"
    )


def cmd_plan(args: argparse.Namespace) -> None:
    from mlimages.train import plan

    if args.paper:
        run = plan.paper_run(args.price, args.mbit_per_s or 1000.0)
        arithmetic = plan.paper_arithmetic()
        _emit(
            {"plan": run.as_dict(), "arithmetic": arithmetic},
            args.json,
            lambda r: "\n".join(r["arithmetic"]),
        )
        return
    if args.images is None:  # a profile's own pretraining, as `mlimages study` would run it
        from mlimages.config.params import load_params

        params = load_params(args.params, args.overrides)
        _emit(plan.profile_plan(params, args.gpu, args.gpus or 1).as_dict(), args.json)
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
        bytes_per_original=original or plan.ORIGINAL_BYTES,
        download_mbit_per_s=args.mbit_per_s or 1000.0,
        price_per_gpu_hour=args.price,
    )
    _emit(result.as_dict(), args.json)


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
    _emit({"k": args.k, **at_k, **summary}, args.json)


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
    _emit(summary, args.json)


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

    _emit(tags, args.json, text)


def cmd_features(args: argparse.Namespace) -> None:
    from mlimages.evaluate.features import run_features

    result = run_features(
        args.inputs, args.ckpt, args.out, args.image_size, args.ten_crop, args.batch,
        **_architecture(args),
    )  # fmt: skip
    _emit(result, args.json, lambda r: f"{r['out']}: {r['shape'][0]} x {r['shape'][1]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlimages", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    taxonomy = verbs.add_parser("taxonomy", help="the dictionary and semantic hierarchy")
    taxonomy_verbs = taxonomy.add_subparsers(dest="action", required=True)
    p = taxonomy_verbs.add_parser("stats", help="classes, roots, leaves, max and mean depth")
    p.add_argument("dictionary", help="dictionary file or http(s) URL")
    _json_arg(p)
    p.set_defaults(func=cmd_taxonomy_stats)

    annotations = verbs.add_parser("annotations", help="label lists")
    annotations_verbs = annotations.add_subparsers(dest="action", required=True)
    p = annotations_verbs.add_parser("stats", help="images, labels per image, classes used")
    p.add_argument("label_list")
    p.add_argument("--dictionary", help="check indices against it; needed for --close")
    p.add_argument("--num-classes", type=int, help="check indices against this count")
    p.add_argument("--close", action="store_true", help="close labels over ancestors first")
    _json_arg(p)
    p.set_defaults(func=cmd_annotations_stats)
    p = annotations_verbs.add_parser(
        "check",
        help="integrity of a label list: every fault with its lines; exit 1 if any",
        description="Count every fault of a label list (bad keys, indices, confidences, "
        "duplicated keys, classes repeated on a line, indices outside the dictionary, a "
        "published line count missed) with examples and line numbers. Exit 0 when clean, "
        "1 when faults were found, 2 when the check could not run.",
    )
    p.add_argument("label_list")
    p.add_argument("--dictionary", help="range of class indices; closure over ancestors")
    p.add_argument("--num-classes", type=int, help="range of class indices without a dictionary")
    p.add_argument("--published", type=int, metavar="N", help="the published number of lines")
    p.add_argument(
        "--expect-closed",
        action="store_true",
        help="labels missing an ancestor are faults (default: reported only)",
    )
    p.add_argument("--examples", type=int, default=10, help="examples per fault (default 10)")
    _json_arg(p)
    p.set_defaults(func=cmd_annotations_check)

    params = verbs.add_parser("params", help="profiles")
    params_verbs = params.add_subparsers(dest="action", required=True)
    p = params_verbs.add_parser("show", help="print a resolved profile")
    _profile_args(p)
    _json_arg(p)
    p.set_defaults(func=cmd_params_show)
    p = params_verbs.add_parser(
        "check",
        help="check every input the stages will need (no network); exit 1 if one is missing",
    )
    _profile_args(p)
    _json_arg(p)
    p.set_defaults(func=cmd_params_check)

    p = verbs.add_parser("synth", help="generate mini ML-Images")
    _profile_args(p)
    p.add_argument("--out", help="output folder (default: runs/<profile>/data/mini)")
    _json_arg(p)
    p.set_defaults(func=cmd_synth)

    p = verbs.add_parser(
        "explore", help="the data-exploration stage (notebook 01) without the notebook"
    )
    _profile_args(p)
    _json_arg(p)
    p.set_defaults(func=cmd_explore)

    p = verbs.add_parser("study", help="run every notebook in order with papermill")
    _profile_args(p)
    p.add_argument("--notebooks", help="notebook folder (default: the repository's notebooks/)")
    p.add_argument(
        "--only", nargs="+", metavar="PREFIX", help="run only notebooks starting with these"
    )
    p.add_argument("--kernel", help="Jupyter kernel (default: the notebook's, 'mlimages')")
    _json_arg(p)
    p.set_defaults(func=cmd_study)

    p = verbs.add_parser(
        "sweep", help="the study's notebooks at every point of a grid, upstream stages reused"
    )
    _profile_args(p)
    p.add_argument(
        "--grid", action="append", required=True, metavar="KEY=V1,V2",
        help="one axis of the grid (repeatable); values read as YAML, e.g. finetune.lr=0.1,0.05",
    )  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", help="fine-tuning seeds (finetune.seeds)")
    p.add_argument("--ckpts", type=int, nargs="+", help="notebook 05's checkpoints (default: all)")
    p.add_argument(
        "--notebooks", nargs="+", default=["05"], metavar="PREFIX",
        help="notebooks after the upstream ones (default: 05); 01-04 run only where not reused",
    )  # fmt: skip
    p.add_argument("--name", help="the sweep's folder under <run>/sweeps/ (default: its keys)")
    p.add_argument("--kernel", help="Jupyter kernel (default: the notebook's, 'mlimages')")
    _json_arg(p)
    p.set_defaults(func=cmd_sweep)

    model = verbs.add_parser("model", help="the paper's ResNet and the authors' checkpoints")
    model_verbs = model.add_subparsers(dest="action", required=True)
    p = model_verbs.add_parser("summary", help="trainable parameters and TF1 variables")
    _model_args(p)
    _json_arg(p)
    p.set_defaults(func=cmd_model_summary)
    p = model_verbs.add_parser(
        "convert-tf1", help="an authors'-format TF1 checkpoint -> a .keras model file"
    )
    p.add_argument("checkpoint", help="checkpoint prefix, or a folder with a `checkpoint` file")
    _model_args(p)
    p.add_argument("--out", required=True, help="output .keras file")
    _json_arg(p)
    p.set_defaults(func=cmd_model_convert_tf1)

    p = verbs.add_parser("subset", help="choose a subset of a label list under a budget")
    p.add_argument("label_list")
    p.add_argument("--out", required=True, help="the chosen label list (authors' format)")
    p.add_argument("--dictionary", help="needed for --subtree; checks class indices")
    p.add_argument("--max-images", type=int)
    p.add_argument("--max-gb", type=float, help="disk budget of the stored images")
    p.add_argument("--bytes-per-image", type=int, help="default: estimated from --max-side")
    p.add_argument("--max-side", type=int, default=320, help="for the disk estimate")
    p.add_argument("--min-per-class", type=int, default=0)
    p.add_argument("--max-per-class", type=int)
    p.add_argument("--subtree", action="append", default=[], metavar="WNID_OR_INDEX")
    p.add_argument("--seed", type=int, default=0)
    _json_arg(p)
    p.set_defaults(func=cmd_subset)

    p = verbs.add_parser("download", help="fetch, validate and resize a URL list (or the stage)")
    p.add_argument("label_list", nargs="?", help="omit to run the profile's download stage")
    p.add_argument("--out", help="output folder: manifest.jsonl, images/, labels.txt")
    p.add_argument("--file-root", help="allow file:// URLs below this folder")
    p.add_argument("--imagenet-root", help="tree or synset tars for ImageNet-id keys")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="only part I of N (by sha1 of the key) into OUT/shard-I-of-N; see `download merge`",
    )
    _fetch_args(p)
    p.set_defaults(func=cmd_download)

    p = verbs.add_parser(
        MERGE_VERB,
        help="join download parts (--shard) into one folder the records stage reads",
        description="`mlimages download merge OUT PART...`: join the parts of a sharded "
        "download into OUT (built beside it, renamed into place at the end). Refuses parts "
        "that overlap or disagree (list, N, image settings), missing or unfinished parts "
        "unless --partial. (A label list named `merge` is downloaded as ./merge.)",
    )
    p.add_argument("out", help="the merged folder: must not exist, or be empty")
    p.add_argument("parts", nargs="+", help="part folders, e.g. OUT/shard-*-of-16")
    p.add_argument("--partial", action="store_true", help="merge even if parts are missing")
    _json_arg(p)
    p.set_defaults(func=cmd_download_merge)

    imagenet = verbs.add_parser("imagenet", help="ImageNet-id-keyed lists from local files")
    imagenet_verbs = imagenet.add_subparsers(dest="action", required=True)
    p = imagenet_verbs.add_parser("extract", help="validate, resize and store from a tree or tars")
    p.add_argument("label_list")
    p.add_argument("--root", required=True, help="ImageNet tree or folder of <wnid>.tar files")
    p.add_argument("--out", required=True)
    _fetch_args(p)
    p.set_defaults(func=cmd_imagenet_extract)

    records_verb = verbs.add_parser("records", help="TFRecord shards (ours and the authors')")
    records_verbs = records_verb.add_subparsers(dest="action", required=True)
    p = records_verbs.add_parser("write", help="the profile's records stage (notebook 03)")
    _profile_args(p)
    p.add_argument("--split", nargs="+", help="only these splits (default: every one downloaded)")
    _json_arg(p)
    p.set_defaults(func=cmd_records_write)
    p = records_verbs.add_parser("inspect", help="name, size and labels of every record")
    p.add_argument("shard", help="a shard in any schema (ours, the authors' dense or int64)")
    p.add_argument("--limit", type=int, help="the first N records only")
    _json_arg(p)
    p.set_defaults(func=cmd_records_inspect)

    pipeline_verb = verbs.add_parser("pipeline", help="the tf.data input pipeline")
    pipeline_verbs = pipeline_verb.add_subparsers(dest="action", required=True)
    p = pipeline_verbs.add_parser("measure", help="images/s of the training input on a split")
    _profile_args(p)
    p.add_argument("--split", default="train")
    p.add_argument("--image-size", type=int, help="default: pretrain.image_size")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--images", type=int, help="default: pipeline.throughput_images")
    p.add_argument("--no-augment", action="store_true", help="decode, resize and scale only")
    _json_arg(p)
    p.set_defaults(func=cmd_pipeline_measure)

    p = verbs.add_parser("pretrain", help="multi-label pretraining (notebook 04)")
    _profile_args(p)
    p.add_argument("--workers", type=int, help="local worker processes (default: pretrain.workers)")
    p.add_argument(
        "--backend", choices=["tf", "horovod"], help="default: pretrain.backend (tf.distribute)"
    )
    p.add_argument("--out", help="run folder (default: runs/<profile>/pretrain)")
    _json_arg(p)
    p.set_defaults(func=cmd_pretrain)

    p = verbs.add_parser("finetune", help="fine-tune checkpoint 1..6 on the target (notebook 05)")
    _profile_args(p)
    p.add_argument("--ckpt", type=int, help="checkpoint setting (default: finetune.ckpt)")
    p.add_argument("--seed", type=int, action="append", help="repeatable (default: finetune.seeds)")
    _json_arg(p)
    p.set_defaults(func=cmd_finetune)

    p = verbs.add_parser("report", help="paper vs ours: tables, figures, publishing (notebook 07)")
    _profile_args(p)
    _json_arg(p)
    p.set_defaults(func=cmd_report)

    p = verbs.add_parser("plan", help="disk, download time, GPU-hours, wall time and cost of a run")
    _profile_args(p)
    p.add_argument("--paper", action="store_true", help="the paper's run, with the arithmetic")
    p.add_argument("--images", type=int, help="training images (omit: plan the --params profile)")
    p.add_argument("--epochs", type=float)
    p.add_argument("--depth", type=int, default=101, help="50, 101 or 152 (default 101)")
    p.add_argument("--blocks", type=int, nargs=4, metavar="N", help="overrides --depth")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=11166)
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
    _json_arg(p)
    p.set_defaults(func=cmd_plan)

    p = verbs.add_parser("metrics", help="multi-label figures of saved scores and labels (.npy)")
    p.add_argument("--scores", required=True, help="[images, classes] scores, .npy")
    p.add_argument("--labels", required=True, help="[images, classes] labels or confidences, .npy")
    p.add_argument("--k", type=int, required=True, help="top-k for the instance-level figures")
    p.add_argument("--threshold", type=float, default=0.5, help="a label >= this is a positive")
    p.add_argument(
        "--score-threshold", type=float, default=0.5, help="class-level: predicted at >= this"
    )
    _json_arg(p)
    p.set_defaults(func=cmd_metrics)

    p = verbs.add_parser("evaluate", help="the paper's metrics on records (notebook 06)")
    _profile_args(p)
    p.add_argument("--ckpt", help="one checkpoint (default: the profile's whole stage)")
    p.add_argument("--out", help="folder for --ckpt's metrics.json and tables")
    p.add_argument("--split", help="records split (default: by the checkpoint's classes)")
    p.add_argument("--image-size", type=int, help="multi-label size (default: the profile's)")
    p.add_argument("--sizes", type=int, nargs="+", help="single-label sizes (default: finetune's)")
    _json_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = verbs.add_parser("tag", help="top tags of images over all classes of a checkpoint")
    p.add_argument("images", nargs="+", help="images, or lists of image paths (one a line)")
    _checkpoint_args(p)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--leaves-only", action="store_true", help="only classes without children")
    p.add_argument("--threshold", type=float, help="drop tags scoring below this")
    p.add_argument("--dictionary", help="class names (default: the --params profile's)")
    _profile_args(p)
    _json_arg(p)
    p.set_defaults(func=cmd_tag)

    p = verbs.add_parser("features", help="pooled features of images into a .npy file")
    p.add_argument("inputs", nargs="+", help="images, or lists of image paths (one a line)")
    _checkpoint_args(p)
    p.add_argument("--out", required=True, help="[images, dim] float32 .npy, rows in input order")
    p.add_argument(
        "--ten-crop", action="store_true", help="average 4 corners + centre and their mirrors"
    )
    _json_arg(p)
    p.set_defaults(func=cmd_features)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mlimages.config.params import ParamsError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["download", "merge"]:  # `download` takes an optional list: route by hand
        argv = [MERGE_VERB, *argv[2:]]
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)  # a verb may return an exit status (a check that found faults)
    except (ParamsError, ValueError, FileNotFoundError, OSError, RuntimeError) as exc:
        print(f"mlimages {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    return code or 0
