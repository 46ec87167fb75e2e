"""The loop shared by URL downloads and ImageNet extraction: fetch, validate, store, record.

Worker threads fetch a key, validate and resize the body, and write the image under a
temporary name before renaming it into its hash-named place; the main thread alone appends
the manifest, one flushed line per finished key. A rerun skips keys already `ok` (and,
unless asked, keys that failed), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlimages.config.sections import DownloadParams
from mlimages.core.atomic import atomic_path
from mlimages.core.progress import quiet, tqdm
from mlimages.data.labels.table import LabelTable
from mlimages.fetch.fetcher import Fetched, FetchFailed, SourceError
from mlimages.fetch.manifest import (
    MANIFEST,
    TMP,
    ManifestWriter,
    compact,
    label_pairs,
    read_manifest,
    store_path,
    write_labels,
)
from mlimages.fetch.validate_image import ImageRejected, ImageRules, process_image

FetchFn = Callable[[str, int], Fetched]


@dataclass
class Summary:
    """What one run did, and where the output folder stands after it (`--json`)."""

    out: str
    listed: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    fetched_ok: int = 0
    fetched_failed: int = 0
    duplicates: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    bytes_original: int = 0
    bytes_stored: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0
    mb_per_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def ingest(
    table: LabelTable,
    out: Path,
    fetch: FetchFn,
    rules: ImageRules,
    *,
    workers: int,
    retry_failed: bool = False,
    progress: bool | None = None,
    desc: str = "download",
    on_interrupt: Callable[[], None] | None = None,
) -> Summary:
    """Bring `out` up to date with `table`; the summary covers this run and the folder."""
    out = Path(out)
    keys = table.keys()
    first: dict[str, int] = {}
    for row, key in enumerate(keys):
        first.setdefault(key, row)
    summary = Summary(out=str(out), listed=len(first), duplicates=len(keys) - len(first))
    started = time.monotonic()
    with ManifestWriter(out) as manifest:
        done = read_manifest(out / MANIFEST)
        todo = [
            row
            for key, row in first.items()
            if not _finished(done.get(key), out, rules, retry_failed)
        ]
        summary.skipped = len(first) - len(todo)
        bar = tqdm(total=len(todo), desc=desc, unit="img", disable=quiet(progress))
        fetched_bytes = 0
        work = _Worker(table, out, fetch, rules)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
        pending: set[Future] = set()
        rows = iter(todo)
        try:
            for row in rows:  # a bounded window: 17.6M futures would not fit in memory
                pending.add(pool.submit(work, row))
                if len(pending) >= 4 * workers:
                    break
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    record = future.result()
                    manifest.append(record)
                    ok = record["status"] == "ok"
                    summary.fetched_ok += ok
                    summary.fetched_failed += not ok
                    fetched_bytes += record.get("original_bytes", 0)
                    bar.update()
                    elapsed = max(time.monotonic() - started, 1e-9)
                    bar.set_postfix(
                        ok=summary.fetched_ok,
                        failed=summary.fetched_failed,
                        MBps=f"{fetched_bytes / elapsed / 1e6:.1f}",
                        refresh=False,
                    )
                    next_row = next(rows, None)
                    if next_row is not None:
                        pending.add(pool.submit(work, next_row))
        except BaseException:
            if on_interrupt is not None:
                on_interrupt()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            bar.close()
        pool.shutdown(wait=True)
        records = compact(out / MANIFEST, first)
        write_labels(out, records, first)
    summary.seconds = round(time.monotonic() - started, 3)
    fetched = summary.fetched_ok + summary.fetched_failed
    summary.images_per_s = round(fetched / max(summary.seconds, 1e-9), 2)
    summary.mb_per_s = round(fetched_bytes / 1e6 / max(summary.seconds, 1e-9), 3)
    _account(summary, records, first)
    return summary


def image_rules(download: DownloadParams) -> ImageRules:
    return ImageRules(
        max_side=download.max_side,
        quality=download.quality,
        max_pixels=download.max_pixels,
        placeholder_sha256=frozenset(h.lower() for h in download.placeholder_sha256),
    )


def _finished(
    record: dict[str, Any] | None, out: Path, rules: ImageRules, retry_failed: bool
) -> bool:
    """Done for this run: `ok` at the same size and quality with its file still there, or
    failed and not to be retried. A changed `max_side` or `quality` redoes the images."""
    if record is None:
        return False
    if record["status"] == "ok":
        same = (record.get("max_side"), record.get("quality")) == (rules.max_side, rules.quality)
        return same and (out / record["path"]).is_file()
    return not retry_failed


def _account(summary: Summary, records: dict[str, dict[str, Any]], keys: dict[str, int]) -> None:
    failures: Counter[str] = Counter()
    for key in keys:
        record = records.get(key)
        if record is None:
            continue
        if record["status"] == "ok":
            summary.ok += 1
            summary.bytes_original += record["original_bytes"]
            summary.bytes_stored += record["stored_bytes"]
        else:
            summary.failed += 1
            failures[record["reason"]] += 1
    summary.failures = dict(failures.most_common())


class _Worker:
    """One key from fetch to a record; runs in a pool thread, touches no shared state."""

    def __init__(self, table: LabelTable, out: Path, fetch: FetchFn, rules: ImageRules) -> None:
        self.table, self.out, self.fetch, self.rules = table, out, fetch, rules

    def __call__(self, row: int) -> dict[str, Any]:
        key = self.table.key(row)
        labels = label_pairs(*self.table.labels(row))
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        try:
            fetched = self.fetch(key, seed)
        except FetchFailed as exc:
            return _failed(key, labels, exc.reason, exc.detail, exc.attempts)
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001  an odd URL must not stop the run either
            return _failed(key, labels, "fetch_error", f"{type(exc).__name__}: {exc}", 1)
        try:
            stored = process_image(fetched.body, self.rules)
        except ImageRejected as exc:
            return _failed(key, labels, exc.reason, exc.detail, fetched.attempts)
        except Exception as exc:  # noqa: BLE001  one odd body must not stop a 17M-image run
            detail = f"{type(exc).__name__}: {exc}"
            return _failed(key, labels, "not_an_image", detail, fetched.attempts)
        path = store_path(key)
        _write_atomic(self.out, path, stored.data)
        record: dict[str, Any] = {
            "key": key,
            "status": "ok",
            "reason": None,
            "path": path,
            "labels": labels,
            "width": stored.width,
            "height": stored.height,
            "original_width": stored.original_width,
            "original_height": stored.original_height,
            "original_format": stored.original_format,
            "original_bytes": len(fetched.body),
            "stored_bytes": len(stored.data),
            "sha256": hashlib.sha256(stored.data).hexdigest(),
            "original_sha256": stored.original_sha256,
            "attempts": fetched.attempts,
            "max_side": self.rules.max_side,
            "quality": self.rules.quality,
        }
        if fetched.url != key:
            record["final_url"] = fetched.url
        return record


def _failed(key: str, labels: list, reason: str, detail: str, attempts: int) -> dict[str, Any]:
    return {
        "key": key,
        "status": "failed",
        "reason": reason,
        "detail": detail[:300],
        "path": None,
        "labels": labels,
        "attempts": attempts,
    }


def _write_atomic(out: Path, relative: str, data: bytes) -> None:
    """Write under `.tmp/`, then rename into place: a reader never sees half an image."""
    with atomic_path(out / relative, tmp_dir=out / TMP) as tmp:
        tmp.write_bytes(data)
