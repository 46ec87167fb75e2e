"""Sharded downloads: parts are disjoint, complete and stable; merge joins them or refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from mlimages.cli import main
from mlimages.data.labels.read import read_label_list
from mlimages.data.labels.table import LabelTable
from mlimages.fetch import shard
from mlimages.fetch.manifest import MANIFEST, read_manifest
from mlimages.input import records

N_IMAGES, PARTS = 12, 3


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A file:// list (one missing image), downloaded whole and as 3 parts, then merged."""
    tmp = tmp_path_factory.mktemp("sharded")
    mirror = tmp / "mirror"
    mirror.mkdir()
    for i in range(N_IMAGES):
        Image.new("RGB", (40 + i, 30), (20 * i, 0, 0)).save(mirror / f"{i}.jpg")
    urls = [(mirror / f"{i}.jpg").as_uri() for i in range(N_IMAGES + 1)]  # the last is missing
    rows = [[(i % 5, 1.0), (5, 0.9)] for i in range(len(urls))]
    LabelTable.from_rows(urls, rows).write(tmp / "list.txt")
    common = ["--file-root", str(mirror), "--workers", "2", "--retries", "0", "--json"]
    assert main(["download", str(tmp / "list.txt"), "--out", str(tmp / "single"), *common]) == 0
    for i in range(PARTS):
        argv = ["download", str(tmp / "list.txt"), "--out", str(tmp / "parts")]
        assert main([*argv, "--shard", f"{i}/{PARTS}", *common]) == 0
    parts = sorted((tmp / "parts").iterdir())
    assert main(["download", "merge", str(tmp / "merged"), *map(str, parts), "--json"]) == 0
    return {
        "tmp": tmp,
        "list": tmp / "list.txt",
        "single": tmp / "single",
        "merged": tmp / "merged",
    }


def _parts(sharded: dict[str, Path]) -> list[Path]:
    return sorted((sharded["tmp"] / "parts").iterdir())


def test_parts_are_disjoint_complete_and_named(sharded) -> None:
    parts = _parts(sharded)
    assert [p.name for p in parts] == [f"shard-{i}-of-{PARTS}" for i in range(PARTS)]
    keys = [set(read_manifest(p / MANIFEST)) for p in parts]
    everything = set(read_label_list(sharded["list"]).keys())
    assert set().union(*keys) == everything
    assert sum(len(k) for k in keys) == len(everything), "no key in two parts"
    for i, part in enumerate(parts):
        meta = json.loads((part / shard.SHARD_FILE).read_text())
        assert (meta["shard"], meta["of"], meta["keys"]) == (i, PARTS, len(keys[i]))
        assert all(shard.key_digest(k) % PARTS == i for k in keys[i])


def test_assignment_is_stable_across_runs_and_machines(sharded) -> None:
    keys = read_label_list(sharded["list"]).keys()
    assert shard.shard_of(keys, PARTS).tolist() == shard.shard_of(list(keys), PARTS).tolist()
    # Pinned: the rule is sha1, never Python's salted `hash`; changing it would reshuffle the
    # keys of every half-finished job array.
    assert shard.key_digest("a") == int("86f7e437faa5a7fc", 16)  # sha1("a")[:8]
    assert shard.shard_of(["a"], 16).tolist() == [int("86f7e437faa5a7fc", 16) % 16]
    # A rerun of a part selects the same keys and fetches nothing again.
    part = _parts(sharded)[1]
    before = (part / MANIFEST).read_text()
    argv = ["download", str(sharded["list"]), "--out", str(sharded["tmp"] / "parts")]
    mirror = str(sharded["tmp"] / "mirror")
    assert main([*argv, "--shard", f"1/{PARTS}", "--file-root", mirror, "--retries", "0"]) == 0
    assert (part / MANIFEST).read_text() == before


def test_merged_folder_reads_like_an_unsharded_download(sharded) -> None:
    single, merged = sharded["single"], sharded["merged"]
    one = read_label_list(single / "labels.txt")
    joined = read_label_list(merged / "labels.txt")

    def rows(table: LabelTable) -> dict[str, tuple]:
        return {
            table.key(i): tuple(zip(*(a.tolist() for a in table.labels(i)), strict=True))
            for i in range(len(table))
        }

    assert rows(joined) == rows(one) and len(joined) == N_IMAGES
    assert read_manifest(merged / MANIFEST).keys() == read_manifest(single / MANIFEST).keys()
    assert all((merged / key).is_file() for key in joined.keys())
    source_one = records.split_source(single, 6)
    source_merged = records.split_source(merged, 6)
    assert sorted(source_merged.names) == sorted(source_one.names)
    summary = json.loads((merged / shard.MERGE_FILE).read_text())
    assert (summary["ok"], summary["failed"], summary["of"]) == (N_IMAGES, 1, PARTS)
    assert not [p for p in merged.parent.iterdir() if ".merging-" in p.name]


def test_merge_refuses_overlapping_parts(sharded, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(sharded["single"], a)  # plain downloads of the same list: every key twice
    shutil.copytree(sharded["single"], b)
    with pytest.raises(
        shard.MergeError, match=r"a and .*b overlap: 13 keys in both, e\.g\. 'file:"
    ):
        shard.merge(tmp_path / "out", [a, b])
    assert not (tmp_path / "out").exists(), "no half-written output"
    assert {p.name for p in tmp_path.iterdir()} == {"a", "b"}


def test_merge_refuses_parts_that_disagree_are_missing_or_unfinished(
    sharded, tmp_path: Path, capsys
) -> None:
    parts = [tmp_path / p.name for p in _parts(sharded)]
    for source, copy in zip(_parts(sharded), parts, strict=True):
        shutil.copytree(source, copy)
    with pytest.raises(shard.MergeError, match=r"parts 2 of 3 are missing"):
        shard.merge(tmp_path / "out", parts[:2])
    assert shard.merge(tmp_path / "partial", parts[:2], partial=True)["keys"] < N_IMAGES + 1
    meta = json.loads((parts[2] / shard.SHARD_FILE).read_text())
    (parts[2] / shard.SHARD_FILE).write_text(json.dumps({**meta, "list_sha256": "0" * 64}))
    with pytest.raises(
        shard.MergeError, match=r"shard-2-of-3 and .*shard-0-of-3 disagree on the list"
    ):
        shard.merge(tmp_path / "out", parts)
    (parts[2] / shard.SHARD_FILE).write_text(json.dumps({**meta, "keys": meta["keys"] + 1}))
    with pytest.raises(shard.MergeError, match=r"shard-2-of-3: .* keys have a record"):
        shard.merge(tmp_path / "out", parts)
    assert not (tmp_path / "out").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    argv = ["download", "merge", str(tmp_path / "full"), *map(str, parts)]
    assert main(argv) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_shard_flag_is_checked() -> None:
    assert shard.parse_shard("3/16") == (3, 16)
    for bad in ("16/16", "-1/4", "3", "a/b", "0/0"):
        with pytest.raises(ValueError, match="expected I/N"):
            shard.parse_shard(bad)
