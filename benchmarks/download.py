"""Downloader throughput against img2dataset, with resizing on, from a loopback server.

A server process (tests/loopback_server.py) serves `--images` URLs of 2-megapixel JPEGs with
`--latency` seconds before every answer. Both downloaders fetch the same list at the same
concurrency (ours: `--workers` threads; img2dataset: one process a core, the threads split
between them), resize so that the shorter side is `--max-side` and re-encode at quality 90.
img2dataset runs from its own virtual environment (its pins clash with ours), created by
this script in ~/.cache/mlimages/img2dataset-venv on first use (needs PyPI once).

Goals (exit 1 if missed): at least img2dataset's images/s, and stored bytes at most 1/10 of
the originals at max_side 320.

    .venv/bin/python benchmarks/download.py                 # 3,000 images, 16 workers
    .venv/bin/python benchmarks/download.py --images 500    # a quicker look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlimages.config.sections import DownloadParams  # noqa: E402
from mlimages.data.labels.table import LabelTable  # noqa: E402
from mlimages.fetch.download import download_list  # noqa: E402

VENV = Path(os.environ.get("MLIMAGES_CACHE", Path.home() / ".cache" / "mlimages"))
VENV = VENV / "img2dataset-venv"


def img2dataset_venv() -> Path:
    """The separate environment, created once."""
    executable = VENV / "bin" / "img2dataset"
    if not executable.is_file():
        print(f"creating {VENV} (img2dataset and its pins, once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "img2dataset"], check=True)
    return executable


def start_server(latency: float) -> tuple[subprocess.Popen, int]:
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "loopback_server.py"), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    return server, int(server.stdout.readline())


def run_ours(table: LabelTable, out: Path, args: argparse.Namespace) -> dict:
    options = DownloadParams(
        workers=args.workers, per_host=args.workers, retries=0, max_side=args.max_side, quality=90
    )
    started = time.perf_counter()
    summary = download_list(table, out, options)
    seconds = time.perf_counter() - started
    return {
        "ok": summary.ok,
        "seconds": seconds,
        "original": summary.bytes_original,
        "stored": summary.bytes_stored,
    }


def run_img2dataset(urls: Path, out: Path, args: argparse.Namespace) -> dict:
    processes = min(os.cpu_count() or 1, args.workers)
    command = [
        str(img2dataset_venv()),
        "--url_list", str(urls), "--input_format", "txt", "--output_folder", str(out),
        "--output_format", "files", "--processes_count", str(processes),
        "--thread_count", str(max(1, args.workers // processes)),
        "--image_size", str(args.max_side), "--resize_mode", "keep_ratio",
        "--resize_only_if_bigger", "True", "--encode_quality", "90", "--encode_format", "jpg",
        "--timeout", "30", "--retries", "0", "--enable_wandb", "False",
        "--number_sample_per_shard", "1000000", "--distributor", "multiprocessing",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    stored = sum(p.stat().st_size for p in out.rglob("*.jpg"))
    return {"ok": sum(s["successes"] for s in stats), "seconds": seconds, "stored": stored}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    parser.add_argument("--max-side", type=int, default=320)
    args = parser.parse_args()

    img2dataset_venv()
    server, port = start_server(args.latency)
    work = Path(tempfile.mkdtemp(prefix="mlimages-bench-"))
    try:
        urls = [f"http://127.0.0.1:{port}/img/{i}.jpg" for i in range(args.images)]
        (work / "urls.txt").write_text("\n".join(urls) + "\n")
        table = LabelTable.from_rows(urls, [[(0, 1.0)]] * len(urls))
        ours = run_ours(table, work / "ours", args)
        theirs = run_img2dataset(work / "urls.txt", work / "img2dataset", args)
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)

    ours_rate = ours["ok"] / ours["seconds"]
    their_rate = theirs["ok"] / theirs["seconds"]
    shrink = ours["stored"] / ours["original"]
    print(f"{args.images} images of 2 MP, {args.workers} concurrent, latency {args.latency}s")
    print(f"{'':14}{'ok':>7}{'seconds':>10}{'images/s':>10}{'stored MB':>11}")
    for name, r in (("mlimages", ours), ("img2dataset", theirs)):
        rate = r["ok"] / r["seconds"]
        print(f"{name:14}{r['ok']:>7}{r['seconds']:>10.1f}{rate:>10.1f}{r['stored'] / 1e6:>11.1f}")
    print(f"originals {ours['original'] / 1e6:.1f} MB; stored/original {shrink:.4f}")
    print(f"ratio mlimages/img2dataset images/s: {ours_rate / their_rate:.2f} (goal >= 1)")
    ok = ours_rate >= their_rate and (args.max_side > 320 or shrink <= 0.1)
    print("goal met" if ok else "goal MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
