"""Local paths or http(s) URLs for inputs such as the authors' dictionary."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from mlimages.core.atomic import atomic_path


def default_cache_dir() -> Path:
    return Path(os.environ.get("MLIMAGES_CACHE", Path.home() / ".cache" / "mlimages"))


def is_url(text: str) -> bool:
    return urlparse(text).scheme in ("http", "https")


def fetch_to_cache(
    path_or_url: str, cache_dir: str | os.PathLike | None = None, timeout: float = 60.0
) -> Path:
    """A local path as is; a URL downloaded once into the cache (atomically) and reused."""
    if not is_url(path_or_url):
        return Path(path_or_url)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    digest = hashlib.sha256(path_or_url.encode()).hexdigest()[:16]
    name = Path(urlparse(path_or_url).path).name or "download"
    target = cache / f"{digest}-{name}"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    try:
        with (
            atomic_path(target) as tmp,
            urllib.request.urlopen(path_or_url, timeout=timeout) as response,
            open(tmp, "wb") as f,
        ):
            while chunk := response.read(1 << 20):
                f.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise OSError(f"could not download {path_or_url}: {exc}") from exc
    return target
