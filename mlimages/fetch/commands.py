"""`mlimages download`, `download merge` and `imagenet extract`: images fetched and stored."""

from __future__ import annotations

import argparse

from mlimages.core.verbs import Verbs, emit, json_arg, profile_args

MERGE_VERB = "download merge"  # one parser name: `download`'s list argument is optional


def _download_params(args: argparse.Namespace):
    """The profile's `download` section with the command line's flags on top."""
    from mlimages.config.params import load_params
    from mlimages.config.sections import DownloadParams

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


def cmd_download(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mlimages.config import layout
    from mlimages.fetch import download

    params, options = _download_params(args)
    if args.label_list is None:  # the whole stage of the profile, as notebook 02 runs it
        if args.shard:
            raise ValueError("--shard is for one list; expected a label list before it")
        if args.out:
            raise ValueError("--out is for one list; the stage writes runs/<profile>/download/")
        params = params.model_copy(update={"download": options})
        params.write(params.stage_dir(layout.DOWNLOAD) / layout.PARAMS_FILE)
        emit(download.run_download_stage(params), args.json)
        return
    if not args.out:
        raise ValueError("--out DIR is required with a label list")
    from mlimages.data.labels.read import read_label_list

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
    emit(summary.as_dict(), args.json)


def cmd_download_merge(args: argparse.Namespace) -> None:
    from mlimages.fetch.shard import merge

    emit(merge(args.out, args.parts, partial=args.partial), args.json)


def cmd_imagenet_extract(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mlimages.data.labels.read import read_label_list
    from mlimages.fetch.imagenet import extract

    _, options = _download_params(args)
    table = read_label_list(args.label_list, progress=options.progress)
    emit(extract(table, args.root, Path(args.out), options).as_dict(), args.json)


def _fetch_args(parser: argparse.ArgumentParser) -> None:
    profile_args(parser)
    parser.add_argument("--workers", type=int, help="concurrent fetches (download.workers)")
    parser.add_argument("--timeout", type=float, help="read timeout, s (download.read_timeout)")
    parser.add_argument("--retries", type=int, help="download.retries")
    parser.add_argument("--max-side", type=int, help="shorter side at most, px (download.max_side)")
    parser.add_argument("--retry-failed", action="store_true", help="fetch failed keys again")
    json_arg(parser)


def add_download(verbs: Verbs) -> None:
    """`download`."""
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


def add_download_merge(verbs: Verbs) -> None:
    """`download merge`."""
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
    json_arg(p)
    p.set_defaults(func=cmd_download_merge)


def add_imagenet(verbs: Verbs) -> None:
    """`imagenet extract`."""
    imagenet = verbs.add_parser("imagenet", help="ImageNet-id-keyed lists from local files")
    imagenet_verbs = imagenet.add_subparsers(dest="action", required=True)
    p = imagenet_verbs.add_parser("extract", help="validate, resize and store from a tree or tars")
    p.add_argument("label_list")
    p.add_argument("--root", required=True, help="ImageNet tree or folder of <wnid>.tar files")
    p.add_argument("--out", required=True)
    _fetch_args(p)
    p.set_defaults(func=cmd_imagenet_extract)
