"""What every `mlimages` verb shares: its output (text, or strict JSON with `--json`) and the
profile arguments, so that each subpackage's `commands` module adds its verbs the same way.

A `commands` module gives one `add_<verb>(verbs)` a verb, which adds the verb's parser to the
top-level `verbs` and sets `func` to its handler; `mlimages.cli` calls them in the order
`mlimages --help` lists them. Handlers import their engines inside, so that the parser is built
without TensorFlow, Keras or pandas.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeAlias

from mlimages.core.atomic import dumps_json

DEFAULT_PROFILE = "default"
Verbs: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def emit(payload: Any, as_json: bool, text: Callable[[Any], str] | None = None) -> None:
    """Print `payload`: strict JSON with `--json` (non-finite floats as null), else text."""
    if as_json:
        print(dumps_json(payload, indent=2))
    elif text is not None:
        print(text(payload))
    elif isinstance(payload, dict):
        width = max((len(k) for k in payload), default=0)
        for key, value in payload.items():
            print(f"{key:<{width}}  {value}")
    else:
        print(payload)


def profile_args(parser: argparse.ArgumentParser) -> None:
    """`--params` and `--set`: the profile a verb resolves, with overrides on top."""
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


def json_arg(parser: argparse.ArgumentParser) -> None:
    """`--json`: the verb's result for machines instead of text."""
    parser.add_argument("--json", action="store_true", help="machine-readable output")
