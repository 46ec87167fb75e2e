"""`.npy` files read and written a block of rows at a time, with plain file reads and writes.

A validation set the size of the paper's (88,739 images x 11,166 classes) is 4 GB of float32
scores: more than a small machine should hold at once. `np.load(mmap_mode="r")` would bound
the heap but not the resident set (every page read stays mapped), so blocks are read into
ordinary buffers that are freed as the reader moves on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlimages.core.atomic import atomic_path


@dataclass(frozen=True)
class NpyHeader:
    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # where the data begin


def read_header(path: str | os.PathLike) -> NpyHeader:
    """Shape, dtype and data offset of a C-order `.npy` file."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            reader = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if reader is None:
                raise ValueError(f"format version {version}")
            shape, fortran_order, dtype = reader(f)
        except ValueError as exc:
            raise ValueError(f"{path}: not a readable .npy file ({exc})") from None
        if fortran_order:
            raise ValueError(f"{path}: Fortran-ordered array; expected C order (np.save default)")
        if dtype.hasobject:
            raise ValueError(f"{path}: object array; expected numbers")
        return NpyHeader(path, tuple(shape), dtype, f.tell())


def iter_rows(header: NpyHeader, rows: int) -> Iterator[np.ndarray]:
    """Blocks of at most `rows` rows of a 2-D `.npy` file, in order."""
    if len(header.shape) != 2:
        raise ValueError(f"{header.path}: shape {header.shape}; expected 2-D [rows, columns]")
    n, width = header.shape
    with open(header.path, "rb") as f:
        f.seek(header.offset)
        for start in range(0, n, rows):
            block = np.empty((min(rows, n - start), width), dtype=header.dtype)
            view = memoryview(block).cast("B")
            if f.readinto(view) != view.nbytes:
                raise ValueError(f"{header.path}: file ends before row {n}; expected {n} rows")
            yield block


class NpyWriter:
    """Writes a 2-D `.npy` file of known shape block by block, under a temporary name that is
    renamed when every row is in (`close`); an incomplete file is removed (`abort`). The
    temporary name is `atomic_path`'s, its block held open across the calls (`ExitStack`)."""

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int], dtype: str | np.dtype):
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._pending = ExitStack()
        self.tmp = self._pending.enter_context(atomic_path(self.path))
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed in close/abort)
        np.lib.format.write_array_header_2_0(
            self.file,
            {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": self.shape,
            },
        )

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.ndim != 2 or block.shape[1] != self.shape[1]:
            raise ValueError(f"{self.path}: block {block.shape}; expected [*, {self.shape[1]}]")
        if self.rows + len(block) > self.shape[0]:
            raise ValueError(f"{self.path}: more than the {self.shape[0]} rows declared")
        self.file.write(block.tobytes())
        self.rows += len(block)

    def close(self) -> Path:
        self.file.close()
        if self.rows != self.shape[0]:
            error = ValueError(f"{self.path}: {self.rows} rows written; declared {self.shape[0]}")
            self._discard(error)
            raise error
        self._pending.close()  # renamed into place
        return self.path

    def abort(self) -> None:
        self.file.close()
        self._discard(RuntimeError(f"{self.path}: aborted"))

    def _discard(self, error: BaseException) -> None:
        """`atomic_path`'s error path: the temporary file is removed, nothing is renamed."""
        self._pending.__exit__(type(error), error, None)
