"""The bridge between a notebook's `parameters` cell and `mlimages.config.params`.

Papermill injects `-p name value` as a cell of assignments and only warns when the name is
not in the parameters cell, so `-p profle smoke` would silently run the default profile.
`stage_params` reads the injected cell back from the kernel's history and refuses names
the notebook does not take.
"""

from __future__ import annotations

import ast
import os
from typing import Any

from mlimages.config import layout
from mlimages.config.params import Params, ParamsError, load_params

PROFILE_ENV = "MLIMAGES_PROFILE"
COMMON = ("profile", "overrides")

# Per stage: notebook parameter name -> dotted parameter it sets (when not None).
NOTEBOOK_PARAMETERS: dict[str, dict[str, str]] = {
    layout.EXPLORE: {"dictionary": "data.dictionary", "label_list": "data.train_list"},
    layout.DOWNLOAD: {"progress": "download.progress"},
    layout.RECORDS: {"augment": "pipeline.augment"},
    layout.PRETRAIN: {"workers": "pretrain.workers"},
    layout.FINETUNE: {"ckpt": "finetune.ckpt"},
}


def stage_params(
    stage: str,
    profile: str,
    overrides: dict[str, Any] | None = None,
    **parameters: Any,
) -> Params:
    """Resolve the profile for one notebook and save it next to the stage's artefacts."""
    accepted = NOTEBOOK_PARAMETERS.get(stage, {})
    expected = (*COMMON, *accepted)
    unknown = [name for name in (*parameters, *_injected_names()) if name not in expected]
    if unknown:
        raise ParamsError(
            f"notebook parameter {unknown[0]!r} is not taken by the {stage!r} notebook; "
            f"expected one of: {', '.join(expected)}"
        )
    profile = profile_in_use(profile)
    merged = dict(overrides or {})
    merged.update({accepted[k]: v for k, v in parameters.items() if v is not None})
    params = load_params(profile, merged)
    params.write(params.stage_dir(stage) / layout.PARAMS_FILE)
    return params


def profile_in_use(profile: str) -> str:
    """The notebook's profile, or MLIMAGES_PROFILE's when papermill injected none: nbval
    cannot pass parameters, and this is its way in."""
    if PROFILE_ENV in os.environ and "profile" not in _injected_names():
        return os.environ[PROFILE_ENV]
    return profile


def _injected_names() -> list[str]:
    """Names assigned in papermill's injected cell (the last `# Parameters` input), if any."""
    try:
        from IPython import get_ipython
    except ImportError:
        return []
    shell = get_ipython()
    if shell is None:
        return []
    for source in reversed(shell.user_ns.get("In", [])):
        if source.lstrip().startswith("# Parameters"):
            tree = ast.parse(source)
            return [
                target.id
                for node in tree.body
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            ]
    return []
