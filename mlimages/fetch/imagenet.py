"""ImageNet-id keys (`n04310904/n04310904_8388.JPEG`): images from a local tree or synset tars.

The ImageNet part of ML-Images and the ImageNet-1k target task cannot be downloaded by URL;
ImageNet is distributed as a folder tree or as one uncompressed tar per synset
(`n04310904.tar` holding `n04310904_8388.JPEG`). Both are read here and go through the same
validation, resize and manifest as downloads (`mlimages.fetch.ingest`). Tar members are indexed
once per synset and read with `os.pread`, so worker threads never share a file position.
"""

from __future__ import annotations

import os
import re
import tarfile
import threading
from pathlib import Path

from mlimages.config.sections import DownloadParams
from mlimages.data.labels.table import LabelTable
from mlimages.fetch.fetcher import Fetched, FetchFailed, SourceError
from mlimages.fetch.ingest import Summary, image_rules, ingest

WNID = re.compile(r"n\d{8}")


class LocalImages:
    """Looks a key up as `root/key`, `root/<file name>`, then in `root/<wnid>.tar`."""

    def __init__(self, root: str | os.PathLike, max_bytes: int = 64 << 20) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageNet folder not found: {self.root}")
        self.max_bytes = max_bytes
        self._tars: dict[str, tuple[Path, dict[str, tuple[int, int]]] | None] = {}
        self._lock = threading.Lock()

    def fetch(self, key: str, seed: int = 0) -> Fetched:
        del seed  # local reads are not retried
        parts = Path(key).parts
        if not parts or Path(key).is_absolute() or ".." in parts:
            raise FetchFailed("bad_key", f"{key!r}: expected a relative ImageNet id")
        for path in (self.root / key, self.root / parts[-1]):
            if path.is_file():
                return Fetched(self._read(path), path.as_uri(), 1)
        wnid = parts[0] if WNID.fullmatch(parts[0]) else parts[-1].split("_")[0]
        found = self._tar_index(wnid)
        if found is not None:
            tar, members = found
            member = members.get(key) or members.get(parts[-1])
            if member is not None:
                return Fetched(self._pread(tar, *member), f"{tar.as_uri()}#{parts[-1]}", 1)
        raise FetchFailed("not_found", f"{key} not in {self.root} (tree or {wnid}.tar)")

    def _read(self, path: Path) -> bytes:
        size = path.stat().st_size
        if size > self.max_bytes:
            raise FetchFailed("too_large", f"{size} bytes")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise FetchFailed("read_error", f"{path}: {exc}") from None

    def _pread(self, tar: Path, offset: int, size: int) -> bytes:
        if size > self.max_bytes:
            raise FetchFailed("too_large", f"{size} bytes")
        fd = os.open(tar, os.O_RDONLY)
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    def _tar_index(self, wnid: str) -> tuple[Path, dict[str, tuple[int, int]]] | None:
        """Member name -> (data offset, size) of `<wnid>.tar`, built once, None if absent."""
        with self._lock:
            if wnid not in self._tars:
                path = self.root / f"{wnid}.tar"
                self._tars[wnid] = (path, _index_tar(path)) if path.is_file() else None
            return self._tars[wnid]


def _index_tar(path: Path) -> dict[str, tuple[int, int]]:
    try:
        with tarfile.open(path, mode="r:") as tar:
            return {m.name.removeprefix("./"): (m.offset_data, m.size) for m in tar if m.isfile()}
    except tarfile.ReadError as exc:
        raise SourceError(
            f"{path}: not an uncompressed tar ({exc}); expected ImageNet's per-synset tars"
        ) from None


def extract(
    table: LabelTable,
    root: str | os.PathLike,
    out: Path,
    download: DownloadParams,
    *,
    desc: str = "imagenet",
) -> Summary:
    """Store the images of an ImageNet-id-keyed list, validated and resized, with a manifest."""
    source = LocalImages(root, download.max_bytes)
    return ingest(
        table,
        out,
        source.fetch,
        image_rules(download),
        workers=min(download.workers, os.cpu_count() or 1),  # local reads: CPU-bound
        retry_failed=download.retry_failed,
        progress=download.progress,
        desc=desc,
    )
