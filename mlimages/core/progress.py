"""One rule for progress bars: on when asked, else only when a person is watching.

Where a bar goes depends on who reads it: a terminal gets tqdm's text on stderr; a notebook
open in JupyterLab gets a widget; a notebook executed headlessly (`mlimages study` sets
`MLIMAGES_HEADLESS=1` for its kernels, `make test` for nbval's) gets text on stdout, so the
executed copy shows the final bar as plain output, not a widget without its state nor a red
stderr box. `tqdm.auto` alone would pick a widget under papermill too, and warn
("IProgress not found") wherever ipywidgets is missing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

HEADLESS_ENV = "MLIMAGES_HEADLESS"


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbval), not in IPython's shell."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ipython = shell.get_ipython()
    except Exception:
        return False
    return ipython is not None and "IPKernelApp" in getattr(ipython, "config", {})


def headless() -> bool:
    """A kernel nobody watches live: papermill under `mlimages study`, nbval under `make test`."""
    return os.environ.get(HEADLESS_ENV, "") not in ("", "0")


def quiet(progress: bool | None) -> bool:
    """tqdm's `disable`: an explicit choice wins; by default bars show in a terminal and in a
    notebook someone has open, and stay off in logs and headless runs."""
    if progress is not None:
        return not progress
    if in_kernel():
        return headless()
    return not sys.stderr.isatty()


def tqdm(*args: Any, **kwargs: Any):
    """A tqdm bar of the kind its reader sees (see the module docstring)."""
    if in_kernel():
        if not headless() and _widgets():
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(*args, **kwargs)
        kwargs.setdefault("file", sys.stdout)
    from tqdm.std import tqdm as text_tqdm

    return text_tqdm(*args, **kwargs)


def _widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
