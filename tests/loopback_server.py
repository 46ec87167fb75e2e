"""A misbehaving image server on loopback, for the downloader's tests and benchmark.

Every way a real image host fails is one path: 404, a 500 that then succeeds, a 429 with
Retry-After, an answer slower than the client's timeout, a truncated JPEG, HTML served as
`image/jpeg`, an empty body, Flickr's placeholder redirect, a redirect, a redirect loop, a
PNG declaring 10^10 pixels, a connection reset. `/img/<n>.jpg` serves one of a few large
JPEGs for the benchmark. Every request is counted per path; `latency` delays every answer.

Run as a script (`python tests/loopback_server.py --latency 0.05 --images 16`), it prints
its port on the first line and serves until killed, so that a benchmark's client and server
do not share one interpreter.
"""

from __future__ import annotations

import argparse
import io
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

PLACEHOLDER_PATH = "/pw/images/en-us/photo_unavailable.png"


def jpeg(width: int, height: int, seed: int = 0, quality: int = 90, mode: str = "RGB") -> bytes:
    """A photo-like JPEG: smooth gradients plus noise, so it compresses like a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            127 + 100 * np.sin(x / (17 + 5 * c) + y / (23 + 7 * c) + rng.uniform(0, 6))
            for c in range(3)
        ],
        axis=-1,
    )
    noise = rng.normal(0, 12, size=(height, width, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def png(width: int, height: int, seed: int = 0) -> bytes:
    """A palette PNG with transparency: must come out as RGB on white."""
    image = Image.open(io.BytesIO(jpeg(width, height, seed))).convert("P", palette=1, colors=64)
    image.info["transparency"] = 0
    out = io.BytesIO()
    image.save(out, format="PNG", transparency=0)
    return out.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring `width` x `height` pixels, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


class LoopbackServer:
    """Start with `with LoopbackServer() as server:`; `server.url(path)`, `server.hits`."""

    def __init__(
        self,
        latency: float = 0.0,
        slow_seconds: float = 3.0,
        bench_images: int = 0,
        bench_size: tuple[int, int] = (1632, 1224),  # 2 megapixels
    ) -> None:
        self.latency = latency
        self.slow_seconds = slow_seconds
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.bodies = {
            "/ok.jpg": jpeg(640, 480, seed=1),
            "/ok.png": png(300, 200, seed=2),
            "/cmyk.jpg": jpeg(200, 300, seed=3, mode="CMYK"),
            "/small.jpg": jpeg(40, 30, seed=4),
            "/redirected.jpg": jpeg(320, 240, seed=8),
            "/grey.jpg": jpeg(500, 400, seed=5, mode="L"),
            "/truncated.jpg": jpeg(640, 480, seed=6)[:20_000],
            "/html.jpg": b"<!DOCTYPE html><html><body>Not found</body></html>",
            "/empty.jpg": b"",
            "/bomb.png": png_bomb(),
            PLACEHOLDER_PATH: png(500, 375, seed=7),
            "/placeholder-body.png": png(500, 375, seed=7),
        }
        self.bench = [jpeg(*bench_size, seed=100 + i) for i in range(bench_images)]
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self, path: str) -> int:
        with self._lock:
            self.hits[path] += 1
            return self.hits[path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real hosts

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802  (http.server's name)
                path = self.path.split("?")[0]
                hits = server.count(path)
                if server.latency:
                    time.sleep(server.latency)
                if path == "/reset":
                    linger = struct.pack("ii", 1, 0)  # RST instead of FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if path == "/slow.jpg":
                    time.sleep(server.slow_seconds)
                    return self._send(200, server.bodies["/ok.jpg"])
                if path == "/flaky.jpg":
                    if hits == 1:
                        return self._send(500, b"Internal Server Error", "text/plain")
                    return self._send(200, server.bodies["/ok.jpg"])
                if path == "/busy.jpg":
                    if hits == 1:
                        return self._send(429, b"slow down", "text/plain", {"Retry-After": "1"})
                    return self._send(200, server.bodies["/small.jpg"])
                if path == "/always-500.jpg":
                    return self._send(503, b"unavailable", "text/plain")
                if path == "/missing.jpg":
                    return self._send(404, b"Not Found", "text/plain")
                if path == "/redirect.jpg":
                    return self._send(302, b"", headers={"Location": "/redirected.jpg"})
                if path == "/gone.jpg":  # how Flickr answers for a deleted photo
                    return self._send(302, b"", headers={"Location": PLACEHOLDER_PATH})
                if path == "/loop-a.jpg":
                    return self._send(302, b"", headers={"Location": "/loop-b.jpg"})
                if path == "/loop-b.jpg":
                    return self._send(301, b"", headers={"Location": "/loop-a.jpg"})
                if path.startswith("/img/") and server.bench:
                    number = int(path.removeprefix("/img/").split(".")[0])
                    return self._send(200, server.bench[number % len(server.bench)])
                if path in server.bodies:
                    return self._send(200, server.bodies[path])
                return self._send(404, b"Not Found", "text/plain")

            def _send(
                self,
                status: int,
                body: bytes,
                content_type: str = "image/jpeg",
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--images", type=int, default=16, help="distinct 2 MP JPEGs to serve")
    args = parser.parse_args()
    with LoopbackServer(latency=args.latency, bench_images=args.images) as server:
        print(server.port, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
