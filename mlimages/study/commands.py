"""`mlimages study` and `mlimages sweep`: the notebooks run from the shell."""

from __future__ import annotations

import argparse

from mlimages.core.verbs import Verbs, emit, json_arg, profile_args


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
    emit(
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
    emit(
        [r.__dict__ for r in runs], args.json, lambda rs: f"study finished: {len(rs)} notebooks ok"
    )


def add_study(verbs: Verbs) -> None:
    """`study`."""
    p = verbs.add_parser("study", help="run every notebook in order with papermill")
    profile_args(p)
    p.add_argument("--notebooks", help="notebook folder (default: the repository's notebooks/)")
    p.add_argument(
        "--only", nargs="+", metavar="PREFIX", help="run only notebooks starting with these"
    )
    p.add_argument("--kernel", help="Jupyter kernel (default: the notebook's, 'mlimages')")
    json_arg(p)
    p.set_defaults(func=cmd_study)


def add_sweep(verbs: Verbs) -> None:
    """`sweep`."""
    p = verbs.add_parser(
        "sweep", help="the study's notebooks at every point of a grid, upstream stages reused"
    )
    profile_args(p)
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
    json_arg(p)
    p.set_defaults(func=cmd_sweep)
