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


def _emit(payload: Any, as_json: bool, text: Callable[[Any], str] | None = None) -> None:
    if as_json:
        print(json.dumps(payload, indent=2, default=float))
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
    from mlimages.taxonomy import load_dictionary

    _emit(load_dictionary(args.dictionary).stats(), args.json)


def cmd_annotations_stats(args: argparse.Namespace) -> None:
    from mlimages.annotations import label_stats, read_label_list

    taxonomy = None
    if args.dictionary:
        from mlimages.taxonomy import load_dictionary

        taxonomy = load_dictionary(args.dictionary)
    elif args.close:
        raise SystemExit("--close needs --dictionary (closure follows the hierarchy)")
    num_classes = taxonomy.num_classes if taxonomy else args.num_classes
    table = read_label_list(args.label_list, num_classes=num_classes)
    if args.close:
        table = table.close(taxonomy)
    _emit(label_stats(table, num_classes), args.json)


def cmd_params_show(args: argparse.Namespace) -> None:
    from mlimages.params import load_params

    params = load_params(args.params, args.overrides)
    if args.json:
        _emit(params.model_dump(mode="json"), True)
    else:
        print(params.to_yaml(), end="")


def cmd_synth(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mlimages.params import load_params
    from mlimages.synthetic import generate

    params = load_params(args.params, args.overrides)
    out = Path(args.out) if args.out else params.run_dir / "data" / "mini"
    dataset = generate(params.synth, out)
    _emit(
        {"out": str(dataset.root), **dataset.info["counts"], "classes": dataset.info["classes"]},
        args.json,
    )


def cmd_explore(args: argparse.Namespace) -> None:
    from mlimages import explore
    from mlimages.params import load_params

    params = load_params(args.params, args.overrides)
    params.write(params.stage_dir(explore.STAGE) / "params.yaml")
    out = explore.save(explore.load(params), params)
    _emit(json.loads((out / "metrics.json").read_text()), args.json)


def cmd_study(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mlimages.params import parse_override
    from mlimages.study import run_study

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

    params = verbs.add_parser("params", help="profiles")
    params_verbs = params.add_subparsers(dest="action", required=True)
    p = params_verbs.add_parser("show", help="print a resolved profile")
    _profile_args(p)
    _json_arg(p)
    p.set_defaults(func=cmd_params_show)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mlimages.params import ParamsError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ParamsError, ValueError, FileNotFoundError, OSError, RuntimeError) as exc:
        print(f"mlimages {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    return 0
