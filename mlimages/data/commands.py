"""`mlimages taxonomy`, `annotations`, `synth`, `explore` and `subset`: the data verbs.

The statistics verbs run without TensorFlow, so that they start at once.
"""

from __future__ import annotations

import argparse
import json

from mlimages.core.verbs import Verbs, emit, json_arg, profile_args


def cmd_taxonomy_stats(args: argparse.Namespace) -> None:
    from mlimages.data.taxonomy import load_dictionary

    emit(load_dictionary(args.dictionary).stats(), args.json)


def cmd_annotations_stats(args: argparse.Namespace) -> None:
    from mlimages.data.labels.read import read_label_list
    from mlimages.data.labels.table import label_stats

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
    emit(label_stats(table, num_classes), args.json)


def cmd_annotations_check(args: argparse.Namespace) -> int:
    from mlimages.data.labels.check import check_list, render

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


def cmd_synth(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mlimages.config import layout
    from mlimages.config.params import load_params
    from mlimages.data.synthetic import generate, statistics

    params = load_params(args.params, args.overrides)
    out = Path(args.out) if args.out else layout.miniature_dir(params.run_dir)
    dataset = generate(params.synth, out)
    if args.json:
        stats = statistics(dataset, params.pretrain.global_batch)
        emit({"out": str(dataset.root), **dataset.info["counts"], **stats}, True)
        return
    emit(
        {"out": str(dataset.root), **dataset.info["counts"], "classes": dataset.info["classes"]},
        False,
    )


def cmd_explore(args: argparse.Namespace) -> None:
    from mlimages.config import layout
    from mlimages.config.params import load_params
    from mlimages.data import explore

    params = load_params(args.params, args.overrides)
    params.write(params.stage_dir(layout.EXPLORE) / layout.PARAMS_FILE)
    out = explore.save(explore.load(params), params)
    emit(json.loads((out / layout.METRICS_FILE).read_text()), args.json)


def cmd_subset(args: argparse.Namespace) -> None:
    from mlimages.config.sections import SubsetParams
    from mlimages.data import subset
    from mlimages.data.labels.read import read_label_list

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
    emit({"out": args.out, **cover.to_dict()}, args.json)


def add_taxonomy(verbs: Verbs) -> None:
    """`taxonomy stats`."""
    taxonomy = verbs.add_parser("taxonomy", help="the dictionary and semantic hierarchy")
    taxonomy_verbs = taxonomy.add_subparsers(dest="action", required=True)
    p = taxonomy_verbs.add_parser("stats", help="classes, roots, leaves, max and mean depth")
    p.add_argument("dictionary", help="dictionary file or http(s) URL")
    json_arg(p)
    p.set_defaults(func=cmd_taxonomy_stats)


def add_annotations(verbs: Verbs) -> None:
    """`annotations stats` and `annotations check`."""
    annotations = verbs.add_parser("annotations", help="label lists")
    annotations_verbs = annotations.add_subparsers(dest="action", required=True)
    p = annotations_verbs.add_parser("stats", help="images, labels per image, classes used")
    p.add_argument("label_list")
    p.add_argument("--dictionary", help="check indices against it; needed for --close")
    p.add_argument("--num-classes", type=int, help="check indices against this count")
    p.add_argument("--close", action="store_true", help="close labels over ancestors first")
    json_arg(p)
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
    json_arg(p)
    p.set_defaults(func=cmd_annotations_check)


def add_synth(verbs: Verbs) -> None:
    """`synth`."""
    p = verbs.add_parser("synth", help="generate mini ML-Images")
    profile_args(p)
    p.add_argument("--out", help="output folder (default: runs/<profile>/data/mini)")
    json_arg(p)
    p.set_defaults(func=cmd_synth)


def add_explore(verbs: Verbs) -> None:
    """`explore`."""
    p = verbs.add_parser(
        "explore", help="the data-exploration stage (notebook 01) without the notebook"
    )
    profile_args(p)
    json_arg(p)
    p.set_defaults(func=cmd_explore)


def add_subset(verbs: Verbs) -> None:
    """`subset`."""
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
    json_arg(p)
    p.set_defaults(func=cmd_subset)
