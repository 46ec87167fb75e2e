"""Fetch one URL: timeouts, retries with backoff, redirects, per-host limits, safe file:// reads.

A thread pool over the standard library's `http.client` rather than asyncio: the cost of a
download here is decoding and resizing a 2-megapixel JPEG (Pillow releases the GIL for both),
so threads keep every core busy with no extra dependency; fetching alone is no slower than
with asyncio and aiohttp, and decoding and resizing, not fetching, bound the rate.
`benchmarks/download.py` compares the whole path with img2dataset. Each worker thread keeps
one keep-alive connection per host.

Failures carry a short `reason` that ends up in the manifest: `http_<status>`, `timeout`,
`connection_error`, `dns_error`, `incomplete_body`, `bad_response`, `redirect_loop`,
`too_many_redirects`, `bad_redirect`, `placeholder`, `too_large`, `refused_scheme`,
`outside_root`, `not_found`, `read_error`, `bad_url`. Timeouts, connection errors, 5xx and 429
are retried (429 and 503 honour Retry-After); other 4xx are final.
"""

from __future__ import annotations

import email.utils
import http.client
import random
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit
from urllib.request import url2pathname

REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = "mlimages/0.1 (research image downloader; Tencent ML-Images reproduction)"
CHUNK = 1 << 16
SAFE = "/?&=;:@!$'()*+,~%-._"  # what stays as is when non-ASCII is percent-encoded


class FetchFailed(Exception):
    """A key that failed for good; `reason` is the manifest's failure reason."""

    def __init__(self, reason: str, detail: str = "", attempts: int = 1) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.attempts = attempts


class SourceError(RuntimeError):
    """The source itself is unusable (a misconfigured folder): stops the run, names the file."""


class _Retryable(FetchFailed):
    """A failure worth another attempt (network, 5xx, 429), maybe after Retry-After seconds."""

    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(reason, detail)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Fetched:
    body: bytes
    url: str  # after redirects
    attempts: int


@dataclass(frozen=True)
class FetchRules:
    """One download's limits; built from a profile's `download` section (which holds the
    defaults) by `mlimages.fetch.download.fetch_rules`."""

    connect_timeout: float
    read_timeout: float
    total_timeout: float
    retries: int
    backoff: float
    backoff_max: float
    max_redirects: int
    max_bytes: int
    per_host: int
    file_root: Path | None
    placeholder_urls: tuple[str, ...]


class Fetcher:
    """Thread-safe: call `fetch` from any number of worker threads."""

    def __init__(self, rules: FetchRules) -> None:
        self.rules = rules
        self._root = rules.file_root.resolve() if rules.file_root else None
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._open: list[http.client.HTTPConnection] = []
        self._stop = threading.Event()
        self._ssl = ssl.create_default_context()

    def stop(self) -> None:
        """Wake sleeping retries and close every connection (Ctrl-C, end of run)."""
        self._stop.set()
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()

    def fetch(self, url: str, seed: int = 0) -> Fetched:
        """The body at `url` after redirects; raises `FetchFailed` with the final reason."""
        rng = random.Random(seed)
        attempts = 0
        while True:
            attempts += 1
            try:
                body, final = self._follow(url)
                return Fetched(body, final, attempts)
            except _Retryable as exc:
                if attempts > self.rules.retries or self._stop.is_set():
                    raise FetchFailed(exc.reason, exc.detail, attempts) from None
                ceiling = min(self.rules.backoff_max, self.rules.backoff * 2 ** (attempts - 1))
                delay = rng.uniform(0, ceiling)  # full jitter: retries of many keys spread out
                if exc.retry_after is not None:
                    delay = min(max(exc.retry_after, delay), self.rules.backoff_max)
                self._stop.wait(delay)
            except FetchFailed as exc:
                exc.attempts = attempts
                raise

    def _follow(self, url: str) -> tuple[bytes, str]:
        deadline = time.monotonic() + self.rules.total_timeout
        seen: set[str] = set()
        current = url
        for hop in range(self.rules.max_redirects + 1):
            if current in seen:
                raise FetchFailed("redirect_loop", f"{current} visited twice")
            seen.add(current)
            try:
                parts = urlsplit(current)
                parts.port  # noqa: B018  (raises ValueError on a bad port)
            except ValueError as exc:
                raise FetchFailed("bad_url", f"{current}: {exc}") from None
            if parts.scheme == "file" and hop == 0:
                return self._read_file(parts.netloc, parts.path), current
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise FetchFailed("refused_scheme", f"{current}: expected an http(s) URL")
            if any(marker in current for marker in self.rules.placeholder_urls):
                raise FetchFailed("placeholder", f"redirected to {current}")
            status, location, retry_after, body = self._get(parts, deadline)
            if status in REDIRECTS:
                if not location:
                    raise FetchFailed("bad_redirect", f"HTTP {status} without Location")
                current = urljoin(current, location)
                continue
            if status == 200:
                return body, current
            if status == 429 or 500 <= status < 600:
                raise _Retryable(f"http_{status}", current, retry_after)
            raise FetchFailed(f"http_{status}", current)
        raise FetchFailed("too_many_redirects", f"more than {self.rules.max_redirects}")

    def _read_file(self, netloc: str, path: str) -> bytes:
        """file:// only below the allowed root, symlinks resolved first (no escape through them)."""
        if self._root is None:
            raise FetchFailed("refused_scheme", "file:// URLs need an allowed root (file_root)")
        if netloc not in ("", "localhost"):
            raise FetchFailed("refused_scheme", f"file:// URL with host {netloc!r}")
        target = Path(url2pathname(path)).resolve()
        if not target.is_relative_to(self._root):
            raise FetchFailed("outside_root", f"{target} is not below {self._root}")
        try:
            if target.stat().st_size > self.rules.max_bytes:
                raise FetchFailed("too_large", f"{target.stat().st_size} bytes")
            return target.read_bytes()
        except FileNotFoundError:
            raise FetchFailed("not_found", str(target)) from None
        except OSError as exc:
            raise FetchFailed("read_error", f"{target}: {exc}") from None

    def _host_limit(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            if host not in self._hosts:
                self._hosts[host] = threading.BoundedSemaphore(self.rules.per_host)
            return self._hosts[host]

    def _get(self, parts, deadline: float) -> tuple[int, str | None, float | None, bytes]:
        """One GET: (status, Location, Retry-After seconds, body of a 200)."""
        host = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), SAFE)
        with self._host_limit(host):
            conn = self._connection(parts, host)
            try:
                conn.request("GET", target, headers={"User-Agent": USER_AGENT})
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop(host)
                raise _Retryable("connection_error", "connection reset") from None
            except TimeoutError:
                self._drop(host)
                raise _Retryable("timeout", "no response in time") from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop(host)
                raise _Retryable("connection_error", str(exc) or type(exc).__name__) from None
            try:
                if response.status != 200:
                    location = response.getheader("Location")
                    retry_after = _retry_after(response.getheader("Retry-After"))
                    self._drop(host)  # do not drain error pages; a new connection is cheap
                    return response.status, location, retry_after, b""
                body = self._read_body(response, deadline)
            except BaseException:
                self._drop(host)
                raise
            if response.will_close:
                self._drop(host)
            return 200, None, None, body

    def _read_body(self, response: http.client.HTTPResponse, deadline: float) -> bytes:
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.rules.max_bytes:
            raise FetchFailed("too_large", f"Content-Length {declared}")
        chunks, total = [], 0
        try:
            while chunk := response.read(CHUNK):
                total += len(chunk)
                if total > self.rules.max_bytes:
                    raise FetchFailed("too_large", f"over {self.rules.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise _Retryable("timeout", f"body not complete in {self.rules.total_timeout}s")
                chunks.append(chunk)
        except http.client.IncompleteRead as exc:
            raise _Retryable("incomplete_body", f"{len(exc.partial)} bytes then closed") from None
        except TimeoutError:
            raise _Retryable("timeout", "body stalled") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable("connection_error", str(exc) or type(exc).__name__) from None
        return b"".join(chunks)

    def _connection(self, parts, host: str) -> http.client.HTTPConnection:
        """This thread's keep-alive connection to `host`, or a new one (connect timeout)."""
        conns = self._local.__dict__.setdefault("conns", {})
        if host in conns:
            sock = conns[host].sock
            # Readable while idle means the server closed it (EOF): reconnect before sending, so
            # a request is never sent twice without counting as an attempt.
            if sock is not None and not select.select([sock], [], [], 0)[0]:
                return conns[host]
        self._drop(host)
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=self.rules.connect_timeout, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=self.rules.connect_timeout
            )
        try:
            conn.connect()
        except socket.gaierror as exc:
            raise _Retryable("dns_error", str(exc)) from None
        except TimeoutError:
            raise _Retryable("timeout", "connect") from None
        except OSError as exc:
            raise _Retryable("connection_error", str(exc) or type(exc).__name__) from None
        conn.sock.settimeout(self.rules.read_timeout)
        conns[host] = conn
        with self._lock:
            self._open.append(conn)
        return conn

    def _drop(self, host: str) -> None:
        conn = self._local.__dict__.setdefault("conns", {}).pop(host, None)
        if conn is not None:
            conn.close()
            with self._lock:
                if conn in self._open:
                    self._open.remove(conn)


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
