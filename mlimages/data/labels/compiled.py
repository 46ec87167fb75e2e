"""The compiled label-list scanner (``_labelscan.c``), where this install has one.

setup.py builds it where a compiler is found. Without it every caller takes its numpy path,
which gives the same results; ``scanner()`` is asked at each use, so that a test can take it
away.
"""

from __future__ import annotations

from types import ModuleType

try:  # the C scanner, built at install by setup.py where a compiler was found
    from mlimages.data.labels import _labelscan
except ImportError:  # pragma: no cover - exercised by installs without a compiler
    _labelscan = None


def scanner() -> ModuleType | None:
    """The compiled module (``scan_lines``, ``key_kind_codes``), or None where it was not built."""
    return _labelscan
