"""One rule for progress bars: on when asked, else only when a person is watching."""

from __future__ import annotations

import sys


def quiet(progress: bool | None) -> bool:
    """tqdm's `disable`: explicit choice wins; by default quiet when stderr is not a TTY."""
    return not progress if progress is not None else not sys.stderr.isatty()
