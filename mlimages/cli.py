"""`mlimages <verb>`: every stage from the shell, `--json` for machines.

Each subpackage adds its own verbs (its `commands` module); this module only lists them in the
order `mlimages --help` shows them, parses and dispatches. The `commands` modules import their
engines inside the handlers, so building the parser pulls in neither TensorFlow nor matplotlib
and the statistics verbs start at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from mlimages.config import commands as config
from mlimages.core.verbs import Verbs
from mlimages.data import commands as data
from mlimages.evaluate import commands as evaluate
from mlimages.fetch import commands as fetch
from mlimages.input import commands as input_
from mlimages.paper import commands as paper
from mlimages.report import commands as report
from mlimages.study import commands as study
from mlimages.train import commands as train

# The order of `mlimages --help`: from the data to the study's results.
VERBS: tuple[Callable[[Verbs], None], ...] = (
    data.add_taxonomy,
    data.add_annotations,
    config.add_params,
    data.add_synth,
    data.add_explore,
    study.add_study,
    study.add_sweep,
    paper.add_model,
    data.add_subset,
    fetch.add_download,
    fetch.add_download_merge,
    fetch.add_imagenet,
    input_.add_records,
    input_.add_pipeline,
    train.add_pretrain,
    train.add_finetune,
    report.add_report,
    train.add_plan,
    evaluate.add_metrics,
    evaluate.add_evaluate,
    evaluate.add_tag,
    evaluate.add_features,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlimages", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    for add in VERBS:
        add(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mlimages.config.params import ParamsError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["download", "merge"]:  # `download` takes an optional list: route by hand
        argv = [fetch.MERGE_VERB, *argv[2:]]
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)  # a verb may return an exit status (a check that found faults)
    except (ParamsError, ValueError, FileNotFoundError, OSError, RuntimeError) as exc:
        print(f"mlimages {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    return code or 0
