"""`mlimages records` and `mlimages pipeline`: TFRecord shards and the tf.data input."""

from __future__ import annotations

import argparse

from mlimages.core.verbs import Verbs, emit, json_arg, profile_args


def cmd_records_write(args: argparse.Namespace) -> None:
    from mlimages.config.params import load_params
    from mlimages.input import records

    params = load_params(args.params, args.overrides)
    emit(records.run_records_stage(params, args.split), args.json)


def cmd_records_inspect(args: argparse.Namespace) -> None:
    from mlimages.input import record_reader

    emit(
        record_reader.inspect(args.shard, args.limit),
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
    index = records.split_index(params.run_dir, args.split)
    from mlimages.input import pipeline  # TensorFlow: only once the records are found

    mode = pipeline.FINETUNE if index.single_label else pipeline.PRETRAIN
    size = args.image_size or params.pretrain.image_size
    dataset = pipeline.train_dataset(
        index, size, args.batch, index.num_classes, mode, seed=params.seed,
        shuffle_buffer=params.pipeline.shuffle_buffer,
        **{**pipeline.augmentation(params.pipeline, mode), "augment": augment},
    )  # fmt: skip
    measured = pipeline.throughput(dataset, args.images or params.pipeline.throughput_images)
    emit({"split": args.split, "image_size": size, "augment": augment, **measured}, args.json)


def add_records(verbs: Verbs) -> None:
    """`records write` and `records inspect`."""
    records_verb = verbs.add_parser("records", help="TFRecord shards (ours and the authors')")
    records_verbs = records_verb.add_subparsers(dest="action", required=True)
    p = records_verbs.add_parser("write", help="the profile's records stage (notebook 03)")
    profile_args(p)
    p.add_argument("--split", nargs="+", help="only these splits (default: every one downloaded)")
    json_arg(p)
    p.set_defaults(func=cmd_records_write)
    p = records_verbs.add_parser("inspect", help="name, size and labels of every record")
    p.add_argument("shard", help="a shard in any schema (ours, the authors' dense or int64)")
    p.add_argument("--limit", type=int, help="the first N records only")
    json_arg(p)
    p.set_defaults(func=cmd_records_inspect)


def add_pipeline(verbs: Verbs) -> None:
    """`pipeline measure`."""
    pipeline_verb = verbs.add_parser("pipeline", help="the tf.data input pipeline")
    pipeline_verbs = pipeline_verb.add_subparsers(dest="action", required=True)
    p = pipeline_verbs.add_parser("measure", help="images/s of the training input on a split")
    profile_args(p)
    p.add_argument("--split", default="train")
    p.add_argument("--image-size", type=int, help="default: pretrain.image_size")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--images", type=int, help="default: pipeline.throughput_images")
    p.add_argument("--no-augment", action="store_true", help="decode, resize and scale only")
    json_arg(p)
    p.set_defaults(func=cmd_pipeline_measure)
