"""`mlimages report`: paper vs ours (notebook 07) from the shell."""

from __future__ import annotations

import argparse

from mlimages.core.verbs import Verbs, emit, json_arg, profile_args


def cmd_report(args: argparse.Namespace) -> None:
    from mlimages.config.params import load_params
    from mlimages.report import paper_vs_ours

    params = load_params(args.params, args.overrides)
    emit(paper_vs_ours.run_report_stage(params), args.json, lambda r: f"{r['out']}\n{r['summary']}")


def add_report(verbs: Verbs) -> None:
    """`report`."""
    p = verbs.add_parser("report", help="paper vs ours: tables, figures, publishing (notebook 07)")
    profile_args(p)
    json_arg(p)
    p.set_defaults(func=cmd_report)
