"""`mlimages params`: a profile resolved, and the inputs its stages will need checked."""

from __future__ import annotations

import argparse

from mlimages.core.verbs import Verbs, emit, json_arg, profile_args


def cmd_params_show(args: argparse.Namespace) -> None:
    from mlimages.config.params import load_params

    params = load_params(args.params, args.overrides)
    if args.json:
        emit(params.model_dump(mode="json"), True)
    else:
        print(params.to_yaml(), end="")


def cmd_params_check(args: argparse.Namespace) -> int:
    from mlimages.config import preflight
    from mlimages.config.params import load_params

    result = preflight.check(load_params(args.params, args.overrides))
    emit(result.as_dict(), args.json, lambda _: result.text())
    return 0 if result.ok else 1


def add_params(verbs: Verbs) -> None:
    """`params show` and `params check`."""
    params = verbs.add_parser("params", help="profiles")
    params_verbs = params.add_subparsers(dest="action", required=True)
    p = params_verbs.add_parser("show", help="print a resolved profile")
    profile_args(p)
    json_arg(p)
    p.set_defaults(func=cmd_params_show)
    p = params_verbs.add_parser(
        "check",
        help="check every input the stages will need (no network); exit 1 if one is missing",
    )
    profile_args(p)
    json_arg(p)
    p.set_defaults(func=cmd_params_check)
