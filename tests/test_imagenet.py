"""ImageNet-id keys from a local tree and from per-synset tars, through the same manifest."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from mlimages.cli import main
from mlimages.config.sections import DownloadParams
from mlimages.data.labels.read import read_label_list
from mlimages.data.labels.table import LabelTable
from mlimages.fetch.fetcher import FetchFailed, SourceError
from mlimages.fetch.imagenet import LocalImages, extract
from mlimages.fetch.manifest import MANIFEST, read_manifest


def _jpeg(size: tuple[int, int], color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture
def imagenet(tmp_path: Path) -> Path:
    """`n01440764/` as a folder, `n02102040.tar` as a tar, plus a corrupt file."""
    root = tmp_path / "imagenet"
    (root / "n01440764").mkdir(parents=True)
    (root / "n01440764" / "n01440764_1.JPEG").write_bytes(_jpeg((400, 300), "red"))
    (root / "n01440764" / "n01440764_2.JPEG").write_bytes(b"\xff\xd8 not really")
    with tarfile.open(root / "n02102040.tar", "w") as tar:
        for n, color in ((7, "green"), (8, "blue")):
            data = _jpeg((120, 160), color)
            info = tarfile.TarInfo(f"n02102040_{n}.JPEG")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return root


KEYS = [
    "n01440764/n01440764_1.JPEG",
    "n01440764/n01440764_2.JPEG",
    "n02102040/n02102040_7.JPEG",
    "n02102040/n02102040_8.JPEG",
    "n02102040/n02102040_9.JPEG",
    "n09999999/n09999999_1.JPEG",
]


def test_tree_and_tars_with_validation_and_resize(imagenet: Path, tmp_path: Path) -> None:
    table = LabelTable.from_rows(KEYS, [[(i % 3, 1.0)] for i in range(len(KEYS))])
    options = DownloadParams(max_side=64, workers=2, progress=False)
    summary = extract(table, imagenet, tmp_path / "out", options)
    records = read_manifest(tmp_path / "out" / MANIFEST)
    statuses = {k: (r["status"], r["reason"]) for k, r in records.items()}
    assert statuses == {
        KEYS[0]: ("ok", None),
        KEYS[1]: ("failed", "not_an_image"),
        KEYS[2]: ("ok", None),
        KEYS[3]: ("ok", None),
        KEYS[4]: ("failed", "not_found"),
        KEYS[5]: ("failed", "not_found"),
    }
    assert (summary.ok, summary.failed) == (3, 3)
    first = records[KEYS[0]]
    assert (first["width"], first["height"]) == (85, 64)
    with Image.open(tmp_path / "out" / records[KEYS[2]]["path"]) as image:
        assert image.size == (64, 85) and image.getpixel((30, 40))[1] > 100  # green survived
    labels = read_label_list(tmp_path / "out" / "labels.txt")
    assert labels.keys() == [records[k]["path"] for k in (KEYS[0], KEYS[2], KEYS[3])]


def test_keys_cannot_escape_the_root(imagenet: Path) -> None:
    source = LocalImages(imagenet)
    with pytest.raises(FetchFailed) as caught:
        source.fetch("../outside.JPEG")
    assert caught.value.reason == "bad_key"


def test_compressed_tars_are_refused_with_a_message(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "n01440764.tar", "w:gz") as tar:
        data = _jpeg((10, 10), "red")
        info = tarfile.TarInfo("n01440764_1.JPEG")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(SourceError, match="not an uncompressed tar"):
        LocalImages(tmp_path).fetch("n01440764/n01440764_1.JPEG")


def test_verb(imagenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    LabelTable.from_rows(KEYS[:1], [[(0, 1.0)]]).write(tmp_path / "list.txt")
    argv = ["imagenet", "extract", str(tmp_path / "list.txt"), "--root", str(imagenet)]
    assert main([*argv, "--out", str(tmp_path / "o"), "--max-side", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["ok"], result["failed"]) == (1, 0)
