"""The downloader against a misbehaving loopback server, resume after kill -9, and the stage."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback_server import PLACEHOLDER_PATH, LoopbackServer
from PIL import Image

from mlimages.cli import main
from mlimages.config.params import load_params
from mlimages.config.sections import DownloadParams
from mlimages.data.labels.read import read_label_list
from mlimages.data.labels.table import LabelTable
from mlimages.fetch import download
from mlimages.fetch.fetcher import _retry_after
from mlimages.fetch.manifest import MANIFEST, ManifestWriter, read_manifest

ROOT = Path(__file__).resolve().parent.parent
MAX_SIDE = 100

# path -> (status, reason, requests the server should see)
EXPECTED = {
    "/ok.jpg": ("ok", None, 1),
    "/ok.png": ("ok", None, 1),
    "/cmyk.jpg": ("ok", None, 1),
    "/grey.jpg": ("ok", None, 1),
    "/small.jpg": ("ok", None, 1),
    "/flaky.jpg": ("ok", None, 2),
    "/busy.jpg": ("ok", None, 2),
    "/redirect.jpg": ("ok", None, 1),
    "/missing.jpg": ("failed", "http_404", 1),
    "/always-500.jpg": ("failed", "http_503", 3),
    "/slow.jpg": ("failed", "timeout", 3),
    "/truncated.jpg": ("failed", "truncated", 1),
    "/html.jpg": ("failed", "html", 1),
    "/empty.jpg": ("failed", "empty", 1),
    "/gone.jpg": ("failed", "placeholder", 1),
    "/placeholder-body.png": ("failed", "placeholder", 1),
    "/loop-a.jpg": ("failed", "redirect_loop", 1),
    "/bomb.png": ("failed", "too_many_pixels", 1),
    "/reset": ("failed", "connection_error", 3),
}


def _options(server: LoopbackServer, **changes: object) -> DownloadParams:
    placeholder = hashlib.sha256(server.bodies["/placeholder-body.png"]).hexdigest()
    base = {
        "workers": 8,
        "retries": 2,
        "backoff": 0.01,
        "backoff_max": 2.0,
        "connect_timeout": 2.0,
        "read_timeout": 0.4,
        "total_timeout": 5.0,
        "max_side": MAX_SIDE,
        "placeholder_sha256": [placeholder],
        "progress": False,
    }
    return DownloadParams.model_validate({**base, **changes})


def _url_list(server: LoopbackServer, paths, extra: list[str] = ()) -> LabelTable:
    urls = [server.url(p) for p in paths] + list(extra)
    return LabelTable.from_rows(urls, [[(i % 7, 1.0), (7, 0.9)] for i in range(len(urls))])


def _stored_files(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((out / "images").rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def misbehaving(tmp_path_factory: pytest.TempPathFactory):
    """One run over every failure mode; the tests below inspect its output."""
    tmp = tmp_path_factory.mktemp("misbehaving")
    mirror = tmp / "mirror"
    mirror.mkdir()
    Image.new("RGB", (300, 200), "red").save(mirror / "local.jpg")
    outside = tmp / "outside.jpg"
    Image.new("RGB", (30, 20), "blue").save(outside)
    extra = [
        (mirror / "local.jpg").as_uri(),
        outside.as_uri(),
        "ftp://127.0.0.1/x.jpg",
    ]
    with LoopbackServer(slow_seconds=2.0) as server:
        extra.append(server.url("/café.jpg"))  # non-ASCII: percent-encoded, a plain 404
        table = _url_list(server, EXPECTED, extra)
        out = tmp / "out"
        summary = download.download_list(table, out, _options(server), file_root=mirror)
        yield server, table, out, summary, extra


def test_every_key_ends_with_one_status_and_reason(misbehaving) -> None:
    server, table, out, summary, extra = misbehaving
    lines = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert [r["key"] for r in lines] == table.keys(), "one line per key, in list order"
    records = {r["key"]: r for r in lines}
    for path, (status, reason, _) in EXPECTED.items():
        record = records[server.url(path)]
        assert (record["status"], record["reason"]) == (status, reason), path
    local, out_of_root, ftp, accented = (records[u] for u in extra)
    assert (local["status"], local["reason"]) == ("ok", None)
    assert (accented["status"], accented["reason"]) == ("failed", "http_404")
    assert (out_of_root["status"], out_of_root["reason"]) == ("failed", "outside_root")
    assert (ftp["status"], ftp["reason"]) == ("failed", "refused_scheme")
    assert summary.ok == 9 and summary.failed == 14 and summary.listed == len(table)
    assert summary.failures["placeholder"] == 2
    assert records[server.url("/redirect.jpg")]["final_url"] == server.url("/redirected.jpg")


def test_retries_only_where_they_can_help(misbehaving) -> None:
    server = misbehaving[0]
    for path, (_, _, requests) in EXPECTED.items():
        assert server.hits[path] == requests, path
    assert server.hits[PLACEHOLDER_PATH] == 0, "the placeholder redirect is never followed"
    assert server.hits["/caf%C3%A9.jpg"] == 1


def test_ok_files_decode_resized_and_failed_bodies_are_gone(misbehaving) -> None:
    server, _, out, _, _ = misbehaving
    records = read_manifest(out / MANIFEST)
    ok = {r["path"]: r for r in records.values() if r["status"] == "ok"}
    assert set(_stored_files(out)) == set(ok), "exactly the ok images are on disk"
    assert not any((out / ".tmp").iterdir()), "no temporary file left"
    for path, record in ok.items():
        data = (out / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
        assert record["stored_bytes"] == len(data)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.format == "JPEG" and image.mode == "RGB"
            assert min(image.size) <= MAX_SIDE
            assert image.size == (record["width"], record["height"])
    small = records[server.url("/small.jpg")]
    assert small["stored_bytes"] == small["original_bytes"], "small RGB JPEGs are kept as they are"
    big = records[server.url("/ok.jpg")]
    assert (big["original_width"], big["width"], big["height"]) == (640, 133, 100)
    assert big["stored_bytes"] < big["original_bytes"] / 5
    png = records[server.url("/ok.png")]
    assert png["original_format"] == "PNG" and min(png["width"], png["height"]) == MAX_SIDE


def test_labels_txt_lists_ok_rows_by_stored_path(misbehaving) -> None:
    _, table, out, _, _ = misbehaving
    records = read_manifest(out / MANIFEST)
    labels = read_label_list(out / "labels.txt")
    ok = [records[k] for k in table.keys() if records[k]["status"] == "ok"]
    assert labels.keys() == [r["path"] for r in ok]
    first = table.keys().index(ok[0]["key"])
    assert labels.labels(0)[0].tolist() == table.labels(first)[0].tolist()
    assert labels.labels(0)[1].tolist() == pytest.approx(table.labels(first)[1].tolist())


def test_rerun_skips_finished_keys_and_retries_failures_only_when_asked(tmp_path: Path) -> None:
    paths = ["/ok.jpg", "/missing.jpg", "/flaky.jpg"]
    with LoopbackServer() as server:
        table = _url_list(server, paths)
        first = download.download_list(table, tmp_path, _options(server))
        assert (first.ok, first.failed, first.skipped) == (2, 1, 0)
        hits = dict(server.hits)
        again = download.download_list(table, tmp_path, _options(server))
        assert (again.ok, again.failed, again.skipped, again.fetched_ok) == (2, 1, 3, 0)
        assert dict(server.hits) == hits, "nothing is fetched again"
        retried = download.download_list(table, tmp_path, _options(server, retry_failed=True))
        assert (retried.skipped, retried.fetched_failed) == (2, 1)
        assert server.hits["/missing.jpg"] == 2 and server.hits["/ok.jpg"] == 1
        smaller = download.download_list(table, tmp_path, _options(server, max_side=50))
        assert (smaller.skipped, smaller.fetched_ok) == (1, 2), "a new size redoes the images"
        assert server.hits["/ok.jpg"] == 2
    assert len((tmp_path / MANIFEST).read_text().splitlines()) == 3
    assert {r.get("max_side") for r in read_manifest(tmp_path / MANIFEST).values()} == {50, None}


def test_kill_9_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    n = 60
    paths = [f"/img/{i}.jpg" for i in range(n)]
    with LoopbackServer(latency=0.05, bench_images=4, bench_size=(200, 150)) as server:
        table = _url_list(server, paths)
        table.write(tmp_path / "list.txt")
        killed = tmp_path / "killed"
        command = [
            sys.executable, "-m", "mlimages", "download", str(tmp_path / "list.txt"),
            "--out", str(killed), "--workers", "2", "--max-side", "64",
        ]  # fmt: skip
        process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
        manifest = killed / MANIFEST
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if manifest.is_file() and manifest.read_text().count("\n") >= 10:
                break
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        done_before = {k for k, r in read_manifest(manifest).items() if r["status"] == "ok"}
        assert 10 <= len(done_before) < n, "killed part way"
        hits_before = dict(server.hits)

        options = _options(server, workers=4, max_side=64)
        resumed = download.download_list(table, killed, options)
        for key in done_before:
            path = key.removeprefix(server.url(""))
            assert server.hits[path] == hits_before[path], f"{path} fetched again"
        assert resumed.skipped == len(done_before) and resumed.ok == n

        clean = download.download_list(table, tmp_path / "clean", options)
    assert clean.ok == n
    assert (killed / MANIFEST).read_text() == (tmp_path / "clean" / MANIFEST).read_text()
    assert _stored_files(killed) == _stored_files(tmp_path / "clean")
    assert (killed / "labels.txt").read_text() == (tmp_path / "clean" / "labels.txt").read_text()


def test_torn_manifest_line_is_dropped_and_the_folder_is_locked(tmp_path: Path) -> None:
    good = {"key": "a", "status": "failed", "reason": "http_404"}
    (tmp_path / MANIFEST).write_text(json.dumps(good) + "\n" + '{"key": "b", "sta')
    with ManifestWriter(tmp_path) as writer:
        writer.append({"key": "c", "status": "failed", "reason": "timeout"})
        with pytest.raises(RuntimeError, match="another download"):
            ManifestWriter(tmp_path).__enter__()
    assert list(read_manifest(tmp_path / MANIFEST)) == ["a", "c"]


def test_retry_after_seconds_and_dates() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after(None) is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now
    assert _retry_after("soon") is None


def test_cli_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with LoopbackServer() as server:
        _url_list(server, ["/ok.jpg", "/missing.jpg"]).write(tmp_path / "list.txt")
        argv = ["download", str(tmp_path / "list.txt"), "--out", str(tmp_path / "out")]
        assert main([*argv, "--workers", "2", "--retries", "0", "--max-side", "50", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["ok"], result["failed"], result["skipped"]) == (1, 1, 0)
    assert result["failures"] == {"http_404": 1}
    assert result["bytes_stored"] < result["bytes_original"]


def test_cli_refuses_file_urls_without_a_root(tmp_path: Path, capsys) -> None:
    Image.new("RGB", (10, 10)).save(tmp_path / "a.jpg")
    LabelTable.from_rows([(tmp_path / "a.jpg").as_uri()], [[(0, 1.0)]]).write(tmp_path / "l.txt")
    assert main(["download", str(tmp_path / "l.txt"), "--out", str(tmp_path / "o"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["failures"] == {"refused_scheme": 1}


def test_stage_on_the_smoke_profile(runs: Path) -> None:
    params = load_params("smoke")
    metrics = download.run_download_stage(params)
    dirs = download.split_dirs(params)
    assert list(dirs) == ["train", "val", "target_train", "target_val", "novel_train", "novel_val"]
    assert list(download.splits(params)) == list(dirs)
    assert metrics["splits"]["train"]["listed"] == params.subset.max_images
    for name, folder in dirs.items():
        labels = read_label_list(folder / "labels.txt")
        assert len(labels) == metrics["splits"][name]["ok"] > 0
        assert all((folder / key).is_file() for key in labels.keys())
    assert metrics["total"]["failed"] == 0
    assert (runs / "smoke" / "download" / "metrics.json").is_file()
    assert (runs / "smoke" / "download" / "subset" / "train_list.txt").is_file()


def test_the_miniature_takes_a_target_task_of_its_own(runs: Path, tmp_path: Path) -> None:
    """download.target_*_list and records.target_dictionary replace the miniature's target."""
    from mlimages.data.synthetic import ensure_miniature

    mini = ensure_miniature(load_params("smoke").synth, tmp_path / "mini")
    own = {
        "download.target_train_list": str(mini.target_list("train")),
        "download.imagenet_train": str(mini.target_dir / "train"),
        "download.target_val_list": str(mini.target_list("val")),
        "download.imagenet_val": str(mini.target_dir / "val"),
        "records.target_dictionary": str(mini.target_dictionary),
    }
    found = download.splits(load_params("smoke", own))
    assert list(found) == ["train", "val", "target_train", "target_val", "novel_train", "novel_val"]
    assert found["novel_val"].root.parts[-2:] == ("novel", "val")  # the miniature's own stays
    assert found["target_train"].label_list == mini.target_list("train")
    assert found["target_val"].root == mini.target_dir / "val"
    only_train = {k: v for k, v in own.items() if "_val" not in k}
    assert set(download.splits(load_params("smoke", only_train))) == {
        "train", "val", "target_train", "novel_train", "novel_val",
    }  # fmt: skip
    without = load_params("smoke", {**only_train, "synth.novel_classes": 0})
    assert set(download.splits(without)) == {"train", "val", "target_train"}
