"""Turn a fetched body into a stored JPEG, or say exactly why it is not an image we keep.

The authors' downloader saved whatever came back as `.jpg`: error pages, empty bodies,
Flickr's "photo unavailable" placeholder. Here a body must decode completely with Pillow,
stay under a pixel limit (decompression bombs are refused from the header, before any
pixel is decoded), and not be a known placeholder. What passes is resized so that its
shorter side is at most `max_side` (JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale
directly, which is most of the speed) and re-encoded as an RGB JPEG.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

MARKUP = b"<"  # HTML error pages, XML, SVG: text, not pixels


class ImageRejected(Exception):
    """A body that is not kept; `reason` is the manifest's failure reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageRules:
    """What a stored image must satisfy and how it is written."""

    max_side: int = 320
    quality: int = 90
    max_pixels: int = 100_000_000
    placeholder_sha256: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StoredImage:
    """The bytes to store and what the manifest records about them."""

    data: bytes
    width: int
    height: int
    original_width: int
    original_height: int
    original_format: str
    original_sha256: str


def process_image(body: bytes, rules: ImageRules) -> StoredImage:
    """Validate, normalise to RGB, resize and re-encode; raise `ImageRejected` otherwise."""
    if not body.strip():
        raise ImageRejected("empty", f"{len(body)} bytes")
    digest = hashlib.sha256(body).hexdigest()
    if digest in rules.placeholder_sha256:
        raise ImageRejected("placeholder", f"sha256 {digest}")
    if body.lstrip().startswith(MARKUP):
        raise ImageRejected("html", repr(body.lstrip()[:40]))
    image = _open(body, rules.max_pixels)
    original = image.size
    fmt = image.format or "unknown"
    target = _target_size(original, rules.max_side)
    orientation = image.getexif().get(0x0112, 1) if fmt == "JPEG" else 1
    if fmt == "JPEG" and image.mode == "RGB" and target == original and orientation == 1:
        _load(image)  # decodes fully: a truncated file fails here, not in training
        return StoredImage(body, *original, *original, fmt, digest)
    if fmt == "JPEG":
        image.draft("RGB", target)  # decode at the smallest 1/2^k scale still >= target
    _load(image)
    image = ImageOps.exif_transpose(image) if orientation != 1 else image
    image = _to_rgb(image)
    size = _target_size(image.size, rules.max_side)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=rules.quality)
    return StoredImage(out.getvalue(), *image.size, *original, fmt, digest)


def _open(body: bytes, max_pixels: int) -> Image.Image:
    """Read the header only; refuse too many pixels before decoding any of them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(body))
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("not_an_image", str(exc)) from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected("not_an_image", f"size {width}x{height}")
    if width * height > max_pixels:
        raise ImageRejected("too_many_pixels", f"{width}x{height} > {max_pixels} pixels")
    return image


def _load(image: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc).lower() else "not_an_image"
        raise ImageRejected(reason, str(exc)) from None
    except (SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageRejected("not_an_image", str(exc)) from None


def _target_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Shorter side at most `max_side`, aspect kept; never upscaled."""
    width, height = size
    short = min(width, height)
    if short <= max_side:
        return size
    scale = max_side / short
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Palette, grey, CMYK, 16-bit to RGB; transparency flattened onto white, not black."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info or image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I;16") or image.mode == "I":
        grey = np.asarray(image).astype(np.int64)
        grey = grey >> 8 if grey.max(initial=0) > 255 else grey  # 16-bit samples to 8
        image = Image.fromarray(grey.clip(0, 255).astype(np.uint8))
    return image.convert("RGB")
